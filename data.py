"""CIFAR-10 for the AlexNet job: download/verify/load, split, normalization, batched augmentation.

Images stay uint8 tensors of shape (N, 3, 32, 32) from disk to the training device; a batch is
converted to float, augmented and normalized there in a few tensor ops, never per image.
"""

import functools
import hashlib
import math
import os
import pickle
import shutil
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)


class DataError(Exception):
    """A problem with the user's data (missing, corrupt, unverified): reported as one line."""


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, 32, 32)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: tuple
    mean: tuple  # per channel, of the training split, in [0, 1]
    std: tuple
    source: str
    content_hash: str  # sha256 of the data files (or of the generated tensors)
    files: list = field(default_factory=list)  # the files the content hash covers
    seed: int = 0  # which subset and split of the files

    @property
    def version(self):
        """Content hash plus the seeded split: two runs share a version only if they saw the same images."""
        spec = (
            f"{self.content_hash}|{len(self.train)}|{len(self.val)}|{len(self.test)}|{','.join(self.classes)}"
            f"|seed {self.seed}"
        )
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def describe(self):
        """What a tracker records about the dataset."""
        return {
            "name": "cifar10" if self.source != "synthetic" else "synthetic",
            "version": self.version,
            "content_hash": self.content_hash,
            "source": self.source,
            "classes": list(self.classes),
            "train_size": len(self.train),
            "val_size": len(self.val),
            "test_size": len(self.test),
            "split_seed": self.seed,
            "mean": [round(m, 6) for m in self.mean],
            "std": [round(s, 6) for s in self.std],
        }

    def to(self, device):
        return Dataset(
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.classes,
            self.mean,
            self.std,
            self.source,
            self.content_hash,
            self.files,
            self.seed,
        )


def load(name, data_dir, *, skip_checksum=False, train_size=None, val_fraction=0.1, seed=0):
    """The named dataset, split into train/val/test with normalization from the train split."""
    if name == "synthetic":
        (xtr, ytr), (xte, yte), content_hash = synthetic(train_size or 5000, seed=seed)
        source, files = "synthetic", []
    else:
        files = cifar10_files(data_dir, skip_checksum)
        xtr, ytr = read_batches(files[:5])
        xte, yte = read_batches(files[5:])
        content_hash = hash_files(files)
        source = (
            "official CIFAR-10 (checksums verified)"
            if not skip_checksum
            else f"CIFAR-10-format copy at {os.path.dirname(files[0])} (checksums not verified)"
        )
    train, val = split(xtr, ytr, train_size, val_fraction, seed)
    mean, std = channel_stats(train.images)
    return Dataset(train, val, Split(xte, yte), CLASSES, mean, std, source, content_hash, files, seed)


def cifar10_files(data_dir, skip_checksum):
    """Paths of the six batch files, downloaded and verified unless skip_checksum."""
    folder = os.path.join(data_dir, BATCH_DIR)
    paths = [os.path.join(folder, f) for f in TRAIN_FILES + TEST_FILES]
    if skip_checksum:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DataError(
                f"{missing[0]} not found: --skip-checksum loads a copy in the official "
                f"python-batch layout ({BATCH_DIR}/data_batch_1..5, test_batch)"
            )
        return paths
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    md5 = dict(CIFAR10.train_list + CIFAR10.test_list)
    if all(os.path.isfile(p) for p in paths):
        bad = [p for p in paths if not check_integrity(p, md5[os.path.basename(p)])]
        if bad:
            raise DataError(
                f"{bad[0]} does not match the official CIFAR-10 checksum (a modified or "
                f"re-encoded copy?); pass --skip-checksum to load it anyway"
            )
        return paths
    created = not os.path.isdir(data_dir)
    try:
        os.makedirs(data_dir, exist_ok=True)
        CIFAR10(data_dir, train=True, download=True)  # reuses a verified archive already in data_dir
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad archive is a RuntimeError
        if created:  # a mistyped --data-dir leaves no empty folder behind
            shutil.rmtree(data_dir, ignore_errors=True)
        raise DataError(
            f"CIFAR-10 is not in {data_dir} and could not be downloaded ({reason(e)}): "
            f"put {ARCHIVE} or the extracted {BATCH_DIR}/ folder in {data_dir}, "
            f"or try --dataset synthetic, which needs no data"
        ) from None
    return cifar10_files(data_dir, skip_checksum=False)


def reason(e):
    return str(getattr(e, "reason", None) or e).strip() or type(e).__name__


class Refused(pickle.UnpicklingError):
    """A batch file asks to load something the official files never hold."""


class BatchUnpickler(pickle.Unpickler):
    """Admits only what the official batch files hold (dicts, lists, bytes, str, numbers and numpy
    arrays): unpickling a crafted file can otherwise run any code, and --skip-checksum checks nothing."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise Refused(
                f"it asks to load {module}.{name}, which a CIFAR-10 batch file never "
                "holds (a crafted file?); nothing in it was run"
            )
        return super().find_class(module, name)


def read_batches(paths):
    """uint8 images (N, 3, 32, 32) and int64 labels from CIFAR-10 python-batch files."""
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                batch = BatchUnpickler(f, encoding="latin1").load()
            data = torch.as_tensor(batch["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
            y = torch.as_tensor(batch["labels"], dtype=torch.int64)
        except Refused as e:
            raise DataError(f"{path} is refused: {e}") from None
        except Exception as e:  # any unpickling or shape error means the file is not a CIFAR batch
            raise DataError(
                f"{path} is not a readable CIFAR-10 batch file (truncated or corrupt?): {type(e).__name__}"
            ) from None
        if len(y) != len(data) or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(CLASSES)):
            raise DataError(f"{path} is not a valid CIFAR-10 batch file (labels do not match images)")
        images.append(data)
        labels.append(y)
    return torch.cat(images), torch.cat(labels)


def hash_files(paths):
    h = hashlib.sha256()
    for path in paths:
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def synthetic(train_size, test_size=None, seed=0):
    """A CIFAR-shaped dataset whose classes differ by a smooth colour template plus noise.

    Each image blends its class's template with another class's (its own weighs 0.35-1), so
    some images are ambiguous and accuracy stays below 100%: curves keep moving, as on real data.
    The templates are fixed (seed 0) so train and test share them; `seed` only draws samples.
    """
    test_size = test_size or max(200, train_size // 5)
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(len(CLASSES), 3, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)

    def draw(n, gen):
        y = torch.randint(0, len(CLASSES), (n,), generator=gen)
        other = (y + torch.randint(1, len(CLASSES), (n,), generator=gen)) % len(CLASSES)
        own = 0.35 + 0.65 * torch.rand(n, 1, 1, 1, generator=gen)
        x = 0.7 * (own * templates[y] + (1 - own) * templates[other]) + 0.3 * torch.rand(n, 3, 32, 32, generator=gen)
        return (x * 255).round().to(torch.uint8), y

    train = draw(train_size, torch.Generator().manual_seed(1000 + seed))
    test = draw(test_size, torch.Generator().manual_seed(2000 + seed))
    h = hashlib.sha256()
    for t in (*train, *test):
        h.update(t.numpy().tobytes())
    return train, test, h.hexdigest()


def split(images, labels, train_size, val_fraction, seed):
    """Seeded subset of train_size images (all if None), then val_fraction of it held out."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    if train_size:
        if train_size > len(labels):
            raise DataError(f"--train-size {train_size} is more than the {len(labels)} training images")
        order = order[:train_size]
    n_val = max(1, round(len(order) * val_fraction))
    if len(order) - n_val < 1:
        raise DataError(f"--train-size {len(order)} leaves no training images after the validation split")
    val, train = order[:n_val], order[n_val:]
    return Split(images[train], labels[train]), Split(images[val], labels[val])


def channel_stats(images, chunk=4096):
    """Per-channel mean and standard deviation in [0, 1], from exact integer sums over chunks
    (a float64 copy of the training set would take over 1 GB)."""
    total, squares = torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(torch.int64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    n = images.numel() // 3
    mean = total.double() / n
    var = (squares.double() - total.double() * mean) / (n - 1)  # unbiased, as torch.std
    return tuple((mean / 255).tolist()), tuple((var.sqrt() / 255).tolist())


@functools.lru_cache(maxsize=8)
def _scale_and_shift(mean, std, device):
    # Made once per device: a tensor built from Python numbers is a host-to-device copy, and on
    # a GPU each such copy waits for all queued work, which would stall every training step.
    scale = torch.tensor([1 / (255 * s) for s in std], device=device).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=device).view(1, 3, 1, 1)
    return scale, shift


def normalize(images, mean, std):
    """uint8 images to normalized float32: (x / 255 - mean) / std as one scale and one shift."""
    scale, shift = _scale_and_shift(tuple(mean), tuple(std), images.device)
    return images.float().mul_(scale).add_(shift)  # in place: a broadcast addcmul is 100x slower on CPU


def augment(images, generator=None, max_shift=2, max_degrees=5.0, flip=True):
    """The study's augmentation for a whole batch at once, in uint8: rotation up to 5 degrees
    (nearest pixel, as torchvision's RandomRotation by default), horizontal flip, then a random
    crop of the image padded by 2 black pixels.

    The three compose into one source pixel (or black) for every output pixel, so the batch is
    one gather from the images framed in black: no per-image work, no float images.
    """
    n, c, h, w = images.shape
    dev = images.device
    u = torch.rand(n, 4, generator=generator, device=dev)
    angle = (u[:, 0] * 2 - 1) * math.radians(max_degrees)
    flip = (u[:, 1] < 0.5) & flip
    dy = torch.floor(u[:, 2] * (2 * max_shift + 1)) - max_shift
    dx = torch.floor(u[:, 3] * (2 * max_shift + 1)) - max_shift
    # A black frame wider than any shift plus rotation reaches (2 + 1.9 pixels), so every source
    # pixel of the crop exists and needs no bounds check: outside the image it is black.
    m = max_shift + math.ceil(math.hypot(h, w) / 2 * 2 * math.sin(math.radians(max_degrees) / 2)) + 1
    side = w + 2 * m  # of the framed image, (h + 2m) x side
    # Row and column in the rotated, flipped image that each output pixel of the crop shows. A
    # row or column of the crop's padding is sent 4 frame widths away: rotation keeps distances,
    # so its source lies outside the frame on some axis, and clamped to the frame it is on the
    # frame's black edge. All (n, h, 1) or (n, 1, w): small tensors.
    r = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1) + dy.view(n, 1, 1)
    q = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w) + dx.view(n, 1, 1)
    far = float(4 * max(side, h + 2 * m))
    r = torch.where((r >= 0) & (r < h), r, -far)
    q = torch.where((q >= 0) & (q < w), q, -far)
    q = torch.where(flip.view(n, 1, 1), (w - 1) - q, q)
    # Rotation about the centre: the source pixel nearest to where each pixel came from.
    y, x = r - (h - 1) / 2, q - (w - 1) / 2
    cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    sy = torch.round(cos * y + sin * x + ((h - 1) / 2 + m)).clamp_(0, h + 2 * m - 1)
    sx = torch.round(cos * x - sin * y + ((w - 1) / 2 + m)).clamp_(0, side - 1)
    index = sy.mul_(side).add_(sx).long()
    framed = F.pad(images, (m, m, m, m)).reshape(n, c, -1)
    return framed.gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
