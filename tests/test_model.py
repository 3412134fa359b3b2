"""AlexNet matches the study's architecture and initialization; checkpoints round-trip."""

import itertools
import math

import pytest
import torch

import alexnet
import cli
import data
import lifecycle
import resume
from trackers import base


def test_parameter_count_and_output_shape():
    model = alexnet.AlexNet(num_classes=10)
    assert alexnet.count_params(model) == 23_272_266
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def test_layers_are_the_studys():
    convs = [m for m in alexnet.AlexNet().features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 64, (3, 3), (2, 2), (1, 1)),
        (64, 192, (3, 3), (1, 1), (1, 1)),
        (192, 384, (3, 3), (1, 1), (1, 1)),
        (384, 256, (3, 3), (1, 1), (1, 1)),
        (256, 256, (3, 3), (1, 1), (1, 1)),
    ]
    linears = [m for m in alexnet.AlexNet().classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 4096), (4096, 4096), (4096, 10)]


def test_initialization_is_kaiming_and_xavier_with_zero_bias():
    torch.manual_seed(0)
    model = alexnet.AlexNet()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.in_channels * 9
            assert abs(m.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.1
            assert m.bias.abs().max() == 0
        elif isinstance(m, torch.nn.Linear):
            expected = math.sqrt(2) * math.sqrt(2 / (m.in_features + m.out_features))
            assert abs(m.weight.std().item() / expected - 1) < 0.1
            assert m.bias.abs().max() == 0


def test_checkpoint_round_trip(tmp_path):
    model = alexnet.AlexNet()
    path = str(tmp_path / "sub" / "epoch_3.pt")
    alexnet.save_checkpoint(path, model, epoch=3, val_acc=0.5)
    restored = alexnet.AlexNet()
    ckpt = alexnet.load_checkpoint(path, restored)
    assert ckpt["epoch"] == 3 and ckpt["val_acc"] == 0.5
    x = torch.randn(2, 3, 32, 32)
    model.eval(), restored.eval()
    assert torch.equal(model(x), restored(x))
    assert not (tmp_path / "sub" / "epoch_3.pt.tmp").exists()


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = [alexnet.lr_factor(s, 100, 10, "cosine") for s in range(100)]
    assert f[0] == 0.1 and f[9] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))
    assert f[-1] < 0.001
    assert all(alexnet.lr_factor(s, 100, 0, "constant") == 1.0 for s in range(100))


def test_study_recipe_is_exact():
    assert alexnet.RECIPES["study"] == dict(
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        batch_size=256,
        epochs=25,
        seed=1234,
        val_fraction=0.1,
        warmup_epochs=0.0,
        schedule="constant",
        label_smoothing=0.0,
        hidden=4096,
    )


def test_optimizers_follow_the_config():
    params = list(alexnet.AlexNet().parameters())
    cfg = dict(alexnet.RECIPES["default"])
    sgd = alexnet.make_optimizer(params, cfg, torch.device("cpu"))
    assert type(sgd) is torch.optim.SGD
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.9, True, 5e-4)
    adamw = alexnet.make_optimizer(
        params, dict(cfg, optimizer="adamw", lr=1e-3, weight_decay=0.05), torch.device("cpu")
    )
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.05
    study = alexnet.make_optimizer(params, alexnet.RECIPES["study"], torch.device("cpu"))
    assert type(study) is torch.optim.Adam and study.param_groups[0]["weight_decay"] == 0


def fitted(images, epochs=25, recipe="default", given=()):
    cfg = dict(alexnet.RECIPES[recipe], epochs=epochs, recipe=recipe)
    return alexnet.fit_to_data(cfg, images, set(given))


def test_the_full_training_set_keeps_the_recipe():
    assert fitted(45_000) == {}  # 176 steps of 256 per epoch, a 2-epoch warmup: the report's runs
    assert fitted(45_000, epochs=2) == {}  # the recipe's rate needs its full warmup (it diverges after 8%)
    assert fitted(3_600, recipe="study") == {}  # the study's recipe stays exact


def test_a_small_training_set_gets_a_smaller_batch_rate_and_warmup():
    # The quick look, --epochs 2 --train-size 4000: 3,600 images in 113 steps of 32 per epoch.
    assert fitted(3_600, epochs=2) == {"batch_size": 32, "lr": 0.0125, "warmup_epochs": 0.16}
    assert fitted(9_000, epochs=3) == {"batch_size": 64, "lr": 0.025, "warmup_epochs": 0.24}
    assert fitted(20_000, epochs=2) == {"batch_size": 128}  # the recipe's rate: its full warmup too
    assert fitted(500) == {"batch_size": 32, "lr": 0.0125}  # never below 32
    assert fitted(25_345) == {} and fitted(25_344) == {"batch_size": 128}  # 100 steps of 256 (the last one short), 99
    # A batch or rate the user gives leaves the recipe as it is; a --try warmup (benchmarks/recipes.py) is kept.
    assert fitted(3_600, epochs=2, given={"batch_size"}) == {} and fitted(3_600, epochs=2, given={"lr"}) == {}
    assert fitted(3_600, epochs=2, given={"warmup_epochs"}) == {"batch_size": 32, "lr": 0.0125}


def test_the_fitted_warmup_is_8_percent_of_the_steps():
    cfg = dict(alexnet.RECIPES["default"], epochs=2, recipe="default", log_every=50, compile=False)
    ds = data.load("synthetic", None, train_size=4000, val_fraction=0.1, seed=0)
    cfg.update(alexnet.fit_to_data(cfg, len(ds.train), set()))
    engine = alexnet.Engine(cfg, ds, base.Disabled(None, "unused"), torch.device("cpu"), "")
    assert (engine.steps_per_epoch, engine.total_steps, engine.warmup_steps) == (113, 226, 18)
    assert engine.opt.param_groups[0]["lr"] == 0.0125 / 18  # the first step of the warmup


def test_hidden_shrinks_only_the_classifier():
    big, small = alexnet.AlexNet(), alexnet.AlexNet(hidden=256)
    assert alexnet.count_params(big) == 23_272_266
    assert [m.weight.shape for m in small.features if isinstance(m, torch.nn.Conv2d)] == [
        m.weight.shape for m in big.features if isinstance(m, torch.nn.Conv2d)
    ]
    linears = [m for m in small.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 256), (256, 256), (256, 10)]


def test_a_run_saved_before_hidden_existed_resumes_with_the_studys_model():
    """A resume state written before --hidden had no such key: it was trained with 4096."""

    def parse(argv):
        return cli.build_parser(base.Disabled).parse_args(["--mode", "disabled", *argv])

    saved = {"config": {k: v for k, v in lifecycle.make_config(parse([])).items() if k != "hidden"}}
    resume.check_resumable(lifecycle.make_config(parse([])), saved)
    with pytest.raises(base.UsageError, match="--hidden 256"):
        resume.check_resumable(lifecycle.make_config(parse(["--hidden", "256"])), saved)
