"""Datasets: the embedded default (8x8 digits), MNIST / Fashion-MNIST from IDX files, CIFAR-10.

Every loader returns a :class:`Dataset` of float tensors in [0, 1] shaped (N, C, H, W) and
int64 labels, with a one-line description of where the data came from and how it was split.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images; ships inside the
  installed package, no download). Split: a fixed seeded shuffle, 80 % train / 20 % test.
* ``mnist`` / ``fashion-mnist``: IDX files (gzip'd or not) in a directory, also in
  torchvision's ``<root>/MNIST/raw`` or ``<root>/raw`` layout. With the train files present
  the official split is used; with only the 10k test files the first 8,000 images train
  and the last 2,000 evaluate (said so in the description).
* ``cifar10``: through torchvision (optional dependency), which can download it.

:func:`download_idx` fetches IDX files torchvision-style (several mirrors, MD5 check,
atomic writes); it is tested on ``file://`` URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .io import _atomic_write_bytes

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "event-digits", "event-mnist")
EVENT_TIMESTEPS = 10  # default number of frames of the event datasets

_IDX = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {  # torchvision's checksums of the gzip'd files
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


@dataclass
class Dataset:
    """Images (N, C, H, W) in [0, 1], or event sequences (T, N, 2, H, W) of 0/1 spikes
    (``sample_dim`` 1: the layout a sequence network takes); int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    description: str
    sample_dim: int = 0

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[self.sample_dim + 1:])

    @property
    def timesteps(self) -> int | None:
        """Sequence length of an event dataset (None for images)."""
        return int(self.x_train.shape[0]) if self.sample_dim == 1 else None

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def take(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Samples start..stop of x (along the sample dimension)."""
        n = x.shape[self.sample_dim]
        stop = n if stop is None else min(stop, n)
        return x.narrow(self.sample_dim, start, max(0, stop - start))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first n_train / n_test samples (None keeps all)."""
        return Dataset(self.name, self.take(self.x_train, 0, n_train), self.y_train[:n_train],
                       self.take(self.x_test, 0, n_test), self.y_test[:n_test],
                       self.description + (f"; first {n_train} train" if n_train else "")
                       + (f", first {n_test} test" if n_test else ""), self.sample_dim)


def load_dataset(name: str, root=None, *, download: bool = False) -> Dataset:
    """Load a dataset by name. root: directory for mnist / fashion-mnist / cifar10."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits()
    if name == "event-digits":
        return to_events(load_digits(), EVENT_TIMESTEPS)
    if root is None:
        raise DataError(f"dataset {name!r} needs a data directory (--data-dir DIR)")
    if name == "cifar10":
        return load_cifar10(root, download=download)
    if name == "event-mnist":
        if download:
            download_idx(root, "mnist")
        return to_events(load_mnist(root, "mnist"), EVENT_TIMESTEPS)
    if download:
        download_idx(root, name)
    return load_mnist(root, name)


# ------------------------------------------------------------------------------ events


def saccade_events(images: torch.Tensor, timesteps: int, *, margin: int = 3, substeps: int = 4,
                   threshold: float = 0.15) -> torch.Tensor:
    """N-MNIST-like event frames from still images, generated (nothing downloaded).

    As the N-MNIST sensor did, the image moves along three saccades (a triangle of ``margin``
    pixels) on a canvas of (H + 2 margin) x (W + 2 margin); an ON (OFF) event fires where
    the intensity seen by a pixel rises (falls) by more than ``threshold`` between two of the
    ``timesteps * substeps`` positions; events are binned into ``timesteps`` frames, a pixel
    spiking (1) in a frame if it had any event there. Deterministic.

    images: (N, 1, H, W) in [0, 1] -> (T, N, 2, H + 2 margin, W + 2 margin) float 0/1.
    """
    import torch.nn.functional as F

    N, _, H, W = images.shape
    S_h, S_w = H + 2 * margin, W + 2 * margin
    canvas = F.pad(images, (margin, margin, margin, margin))
    steps = timesteps * substeps
    corners = [(0.0, 0.0), (margin, margin / 2), (0.0, margin), (0.0, 0.0)]  # three saccades
    pos = []
    for k in range(steps + 1):
        u = 3 * k / steps
        i = min(int(u), 2)
        f = u - i
        (y0, x0), (y1, x1) = corners[i], corners[i + 1]
        pos.append(((y0 + f * (y1 - y0)) - margin / 2, (x0 + f * (x1 - x0)) - margin / 2))
    frames = torch.zeros(timesteps, N, 2, S_h, S_w)
    prev = None
    for k, (dy, dx) in enumerate(pos):
        theta = torch.tensor([[1.0, 0.0, 2 * dx / S_w], [0.0, 1.0, 2 * dy / S_h]]).expand(N, 2, 3)
        grid = F.affine_grid(theta, (N, 1, S_h, S_w), align_corners=False)
        cur = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
        if prev is not None:
            d = cur - prev
            t = min((k - 1) // substeps, timesteps - 1)
            frames[t, :, 0] = torch.maximum(frames[t, :, 0], (d > threshold).float())
            frames[t, :, 1] = torch.maximum(frames[t, :, 1], (d < -threshold).float())
        prev = cur
    return frames


def to_events(ds: Dataset, timesteps: int) -> Dataset:
    """An image dataset as event sequences (see :func:`saccade_events`)."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= 1000:
        raise DataError(f"event datasets need timesteps in 1..1000, got {timesteps!r}")
    if ds.x_train.shape[1] != 1:
        raise DataError(f"event frames are made from grey images (1 channel), got {ds.x_train.shape[1]}")
    xtr, xte = saccade_events(ds.x_train, timesteps), saccade_events(ds.x_test, timesteps)
    shape = tuple(xtr.shape[2:])
    desc = (f"event frames ({timesteps} x 2 polarities x {shape[1]}x{shape[2]}, generated by three saccades over "
            f"each image, N-MNIST-like) of {ds.description}")
    return Dataset(f"event-{ds.name}", xtr, ds.y_train, xte, ds.y_test, desc, sample_dim=1)


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    try:
        from sklearn.datasets import load_digits as _sk
    except ImportError:  # pragma: no cover
        raise DataError("the embedded 'digits' dataset needs scikit-learn (pip install scikit-learn)") from None
    d = _sk()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    desc = f"8x8 digits (scikit-learn, embedded): {len(tr)} train / {len(te)} test, seeded shuffle (seed {seed})"
    return Dataset("digits", x[tr], y[tr], x[te], y[te], desc)


# ----------------------------------------------------------------------------------- IDX


def read_idx(path) -> np.ndarray:
    """An IDX file (optionally gzip'd) as a numpy array; clear errors when it is not one."""
    import zlib

    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"{str(path)!r} is a truncated or corrupt gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an unsigned-byte IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if not 1 <= ndim <= 4 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{str(path)!r} is truncated or corrupt (header of {ndim} dimensions)")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    n = math.prod(dims)  # Python integers: no overflow
    body = raw[4 + 4 * ndim :]
    if n == 0:
        raise DataError(f"{str(path)!r} holds no data (shape {dims})")
    if len(body) != n:
        raise DataError(f"{str(path)!r} is corrupt: header says {n} bytes of data for shape {dims}, found {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_mnist(root, name: str = "mnist") -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data directory not found: {str(root)!r}")
    files = {k: _find(root, stem) for k, stem in _IDX.items()}
    if files["test_images"] is None or files["test_labels"] is None:
        raise DataError(
            f"no {name} IDX files in {str(root)!r}: expected t10k-images-idx3-ubyte[.gz] and "
            "t10k-labels-idx1-ubyte[.gz] (also looked in raw/ and MNIST/raw/)"
        )

    def pair(kind):
        x, y = read_idx(files[f"{kind}_images"]), read_idx(files[f"{kind}_labels"])
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(f"{name} {kind} files do not match: images {x.shape}, labels {y.shape}")
        if x.shape[0] == 0:
            raise DataError(f"{name} {kind} files hold 0 images")
        if y.max() > 9:
            raise DataError(f"{name} {kind} labels must be 0..9, found {int(y.max())}")
        return torch.from_numpy(x.copy()).float().div_(255.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))

    xt, yt = pair("test")
    if files["train_images"] and files["train_labels"]:
        xtr, ytr = pair("train")
        desc = f"{name} from {root}: official split, {len(ytr)} train / {len(yt)} test"
        return Dataset(name, xtr, ytr, xt, yt, desc)
    if len(yt) < 10:
        raise DataError(f"{name} test files in {str(root)!r} hold only {len(yt)} images")
    cut = len(yt) * 4 // 5
    desc = (f"{name} test split only ({root}): first {cut} images train, last {len(yt) - cut} evaluate")
    return Dataset(name, xt[:cut], yt[:cut], xt[cut:], yt[cut:], desc)


def download_idx(root, name: str = "mnist", mirrors=None, files=None) -> list[Path]:
    """Fetch the gzip'd IDX files of ``name`` into ``root`` (skipping ones already there),
    trying each mirror in turn and checking MD5 sums; files are written atomically."""
    md5 = MNIST_MD5 if name == "mnist" else FASHION_MD5
    mirrors = mirrors or (MNIST_MIRRORS if name == "mnist" else FASHION_MIRRORS)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for fname in files or md5:
        dest = root / fname
        if dest.is_file() and _md5(dest.read_bytes()) == md5[fname]:
            out.append(dest)
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    data = r.read()
            except Exception as e:  # noqa: BLE001 - try the next mirror
                errors.append(f"{url}: {e}")
                continue
            if _md5(data) != md5[fname]:
                errors.append(f"{url}: MD5 mismatch")
                continue
            _atomic_write_bytes(dest, data)
            out.append(dest)
            break
        else:
            raise DataError(f"could not download {fname}: " + "; ".join(errors))
    return out


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ----------------------------------------------------------------------------------- CIFAR


def load_cifar10(root, download: bool = False) -> Dataset:
    try:
        import torchvision
    except ImportError:
        raise DataError("cifar10 needs torchvision (pip install torchvision)") from None
    root = Path(root)
    try:
        tr = torchvision.datasets.CIFAR10(str(root), train=True, download=download)
        te = torchvision.datasets.CIFAR10(str(root), train=False, download=download)
    except RuntimeError as e:
        raise DataError(f"cifar10 in {str(root)!r}: {e} (use --download to fetch it)") from None

    def conv(ds):
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    (xtr, ytr), (xte, yte) = conv(tr), conv(te)
    return Dataset("cifar10", xtr, ytr, xte, yte, f"CIFAR-10 (torchvision, {root}): 50000 train / 10000 test")
