"""CIFAR-10 loading, verification, splitting, normalization and batched augmentation."""

import os
import pickle
import shutil

import pytest
import torch
from conftest import write_cifar_batches

import data


def test_reads_official_python_batch_layout(cifar_dir):
    ds = data.load("cifar10", cifar_dir, skip_checksum=True, val_fraction=0.1, seed=0)
    assert len(ds.train) + len(ds.val) == 400 and len(ds.test) == 100
    assert len(ds.val) == 40
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (3, 32, 32)
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10
    # the pixels are those written: the first test image round-trips exactly
    (_, _), (xt, yt), _ = data.synthetic(400, 100, seed=0)
    assert torch.equal(ds.test.images, xt) and torch.equal(ds.test.labels, yt)


def test_unverified_copy_is_refused_with_a_pointer_to_skip_checksum(cifar_dir):
    with pytest.raises(data.DataError, match="--skip-checksum"):
        data.load("cifar10", cifar_dir)


def test_content_hash_is_the_version_and_follows_the_files(tmp_path, cifar_dir):
    a = data.load("cifar10", cifar_dir, skip_checksum=True)
    copy = str(tmp_path / "copy")
    shutil.copytree(cifar_dir, copy)
    assert data.load("cifar10", copy, skip_checksum=True).version == a.version
    write_cifar_batches(copy, seed=1)
    b = data.load("cifar10", copy, skip_checksum=True)
    assert b.content_hash != a.content_hash and b.version != a.version
    assert data.load("cifar10", cifar_dir, skip_checksum=True, train_size=100).version != a.version
    # the same number of other images (another seed's subset and split) is another version
    assert data.load("cifar10", cifar_dir, skip_checksum=True, seed=1).version != a.version


def test_corrupt_batch_file_is_a_clear_error(tmp_path, cifar_dir):
    copy = str(tmp_path / "copy")
    shutil.copytree(cifar_dir, copy)
    path = os.path.join(copy, data.BATCH_DIR, "data_batch_3")
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(data.DataError, match="data_batch_3.*truncated or corrupt"):
        data.load("cifar10", copy, skip_checksum=True)


def test_missing_data_without_network_says_where_to_put_it(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(data.DataError) as e:
        data.load("cifar10", str(tmp_path))
    assert "cifar-10-python.tar.gz" in str(e.value) and "--dataset synthetic" in str(e.value)
    with pytest.raises(data.DataError):  # a mistyped folder is not left behind, empty
        data.load("cifar10", str(tmp_path / "mistyped"))
    assert not os.path.exists(tmp_path / "mistyped")


def test_split_is_seeded_disjoint_and_sized():
    x = (torch.arange(1000) % 256).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8)
    y = torch.arange(1000) % 10
    tr1, va1 = data.split(x, torch.arange(1000), None, 0.1, seed=3)
    tr2, va2 = data.split(x, torch.arange(1000), None, 0.1, seed=3)
    tr3, va3 = data.split(x, torch.arange(1000), None, 0.1, seed=4)
    assert torch.equal(tr1.labels, tr2.labels) and torch.equal(va1.labels, va2.labels)
    assert not torch.equal(va1.labels, va3.labels)
    assert len(va1) == 100 and len(tr1) == 900
    assert set(tr1.labels.tolist()).isdisjoint(va1.labels.tolist())
    sub_tr, sub_va = data.split(x, y, 200, 0.25, seed=3)
    assert len(sub_tr) == 150 and len(sub_va) == 50
    assert torch.equal(tr1.images[:, 0, 0, 0], (tr1.labels % 256).to(torch.uint8))  # images follow labels


def test_channel_statistics_equal_the_float64_formula():
    x = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8)
    mean, std = data.channel_stats(x, chunk=300)
    f = x.double() / 255
    assert mean == pytest.approx(f.mean(dim=(0, 2, 3)).tolist(), rel=1e-12)
    assert std == pytest.approx(f.std(dim=(0, 2, 3)).tolist(), rel=1e-12)


def test_normalization_uses_training_statistics():
    ds = data.load("synthetic", None, train_size=500, seed=0)
    x = data.normalize(ds.train.images, ds.mean, ds.std)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_augmentation_shapes_and_randomness():
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8)
    a = data.augment(x, torch.Generator().manual_seed(0))
    b = data.augment(x, torch.Generator().manual_seed(0))
    c = data.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    unchanged = [torch.equal(a[i], x[i]) for i in range(128)]
    assert sum(unchanged) < 16  # most images are moved, flipped or rotated


def test_crop_and_flip_copy_pixels_exactly():
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    out = data.augment(x, torch.Generator().manual_seed(0), max_degrees=0.0)
    flips = 0
    for i in range(32):
        matches = [
            (f, dy, dx)
            for f in (False, True)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(
                torch.nn.functional.pad(x[i].flip(-1) if f else x[i], (2, 2, 2, 2))[:, dy : dy + 32, dx : dx + 32],
                out[i],
            )
        ]
        assert matches, f"image {i} is not a padded crop of the input"
        flips += matches[0][0]
    assert 4 < flips < 28  # about half are flipped


def test_rotation_is_torchvisions_nearest_rotation():
    import torchvision.transforms.functional as TF

    x = torch.randint(1, 256, (32, 3, 32, 32), dtype=torch.uint8)
    out = data.augment(x, torch.Generator().manual_seed(7), max_shift=0, flip=False)
    angles = (torch.rand(32, 4, generator=torch.Generator().manual_seed(7))[:, 0] * 2 - 1) * 5  # augment's draw
    assert angles.abs().max() > 4 and (angles > 0).any() and (angles < 0).any()
    for i in range(32):
        want = TF.rotate(x[i], float(angles[i]), interpolation=TF.InterpolationMode.NEAREST)
        assert torch.equal(out[i], want), i


def test_rotation_flip_and_crop_compose_as_the_studys_pipeline():
    """rotate, then flip, then crop from the 2-pixel black padding: every pixel, all three at once."""
    import torchvision.transforms.functional as TF

    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = data.augment(x, torch.Generator().manual_seed(3))
    u = torch.rand(64, 4, generator=torch.Generator().manual_seed(3))  # augment's draws
    for i in range(64):
        angle, flip = float((u[i, 0] * 2 - 1) * 5), bool(u[i, 1] < 0.5)
        dy, dx = (int(torch.floor(u[i, k] * 5)) for k in (2, 3))  # offsets into the padded image
        y = TF.rotate(x[i], angle, interpolation=TF.InterpolationMode.NEAREST)
        y = torch.nn.functional.pad(y.flip(-1) if flip else y, (2, 2, 2, 2))
        assert torch.equal(out[i], y[:, dy : dy + 32, dx : dx + 32]), i


def test_normalize_matches_the_formula():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    want = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(data.normalize(x, mean, std), want, atol=1e-5)


def test_synthetic_data_is_deterministic_and_class_structured():
    (x1, y1), _, h1 = data.synthetic(300, seed=0)
    (x2, y2), _, h2 = data.synthetic(300, seed=0)
    assert torch.equal(x1, x2) and h1 == h2
    means = torch.stack([x1[y1 == c].float().mean(0) for c in range(10)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 100


class RunsCode:
    """A pickled object whose unpickling runs a command: what a crafted batch file can carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_batch_file_is_refused_and_its_code_never_runs(tmp_path, cifar_dir):
    copy = tmp_path / "copy"
    shutil.copytree(cifar_dir, copy)
    marker = tmp_path / "code-ran"
    with open(copy / data.BATCH_DIR / "data_batch_3", "wb") as f:
        pickle.dump(
            {"batch_label": "x", "labels": [0], "data": RunsCode(marker), "filenames": ["a.png"]}, f, protocol=2
        )
    with pytest.raises(data.DataError, match=r"data_batch_3 is refused: it asks to load posix\.system"):
        data.load("cifar10", str(copy), skip_checksum=True)
    assert not marker.exists()
    data.load("cifar10", str(cifar_dir), skip_checksum=True)  # the files as written (protocol 2, numpy) load
