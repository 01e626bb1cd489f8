"""MNIST and Fashion-MNIST from IDX files, and MNIST padded to CIFAR's shape.

IDX files (gzip'd or not) are read from a directory, also in torchvision's
``<root>/MNIST/raw`` or ``<root>/raw`` layout. With the train files present the official
split is used; with only the 10k test files the first 8,000 images train and the last 2,000
evaluate (said so in the description).
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .base import Dataset
from .download import download_files

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
    return download_files(root, md5, mirrors or (MNIST_MIRRORS if name == "mnist" else FASHION_MIRRORS), files)


def to_cifar_shape(ds: Dataset, size: int = 32, channels: int = 3) -> Dataset:
    """Grey 28x28 images zero-padded to ``size`` x ``size`` and repeated over ``channels``:
    MNIST in CIFAR-10's (3, 32, 32) input shape, so CIFAR-size networks (vgg9, vgg16,
    resnet19) can be trained and checked on real MNIST data. The digit stays at its pixels;
    no resampling."""
    _, c, h, w = ds.x_train.shape
    if c != 1 or h > size or w > size:
        raise DataError(f"padding to {channels}x{size}x{size} takes grey images of at most {size}x{size}, "
                        f"got {c}x{h}x{w}")
    top, left = (size - h) // 2, (size - w) // 2
    pad = (left, size - w - left, top, size - h - top)

    def conv(x):
        return F.pad(x, pad).expand(-1, channels, -1, -1).contiguous()

    return Dataset(f"{ds.name}32", conv(ds.x_train), ds.y_train, conv(ds.x_test), ds.y_test,
                   f"{ds.description}; zero-padded to {size}x{size} and repeated over {channels} channels",
                   ds.sample_dim)
