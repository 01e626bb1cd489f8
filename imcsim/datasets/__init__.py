"""Datasets: every loader returns a :class:`Dataset` of float tensors in [0, 1] shaped
(N, C, H, W) (or event frames (T, N, 2, H, W)) and int64 labels, with a one-line
description of where the data came from and how it was split.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images; ships inside the
  installed package, no download). Split: a fixed seeded shuffle, 80 % train / 20 % test.
* ``event-digits`` / ``event-mnist``: N-MNIST-like event frames generated from them (:mod:`.events`).
* ``mnist`` / ``fashion-mnist``: IDX files (:mod:`.idx`); ``mnist32``: MNIST zero-padded to
  3x32x32, CIFAR's input shape, for the CIFAR-size networks.
* ``cifar10`` / ``cifar100``: the official binary releases, never the pickled ones (:mod:`.cifar`).
* ``nmnist``: N-MNIST's original binary event files (:mod:`.nmnist`).

Downloads (``download=True``) try each mirror, check MD5 sums and write atomically
(:mod:`.download`); the code path is tested on ``file://`` URLs.
"""

from __future__ import annotations

import torch

from ..errors import DataError
from .base import Dataset
from .cifar import load_cifar
from .download import download_files
from .events import saccade_events, to_events
from .idx import download_idx, load_mnist, read_idx, to_cifar_shape
from .nmnist import load_nmnist

__all__ = ["DATASETS", "DataError", "Dataset", "download_files", "download_idx", "load_dataset", "load_digits",
           "load_mnist", "load_nmnist", "read_idx", "saccade_events", "to_cifar_shape", "to_events"]

DATASETS = ("digits", "mnist", "mnist32", "fashion-mnist", "cifar10", "cifar100", "event-digits", "event-mnist",
            "nmnist")
EVENT_TIMESTEPS = 10  # default number of frames of the event datasets
EMBEDDED = ("digits", "event-digits")


def load_dataset(name: str, root=None, *, download: bool = False, n_train: int | None = None,
                 n_test: int | None = None) -> Dataset:
    """Load a dataset by name; ``root``: its directory (all but the embedded ones).
    ``n_train`` / ``n_test``: keep the first samples only (N-MNIST then decodes no more)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if name == "digits":
        ds = load_digits()
    elif name == "event-digits":  # the frames of the samples kept only (each image's frames are its own)
        return to_events(_first(load_digits(), n_train, n_test), EVENT_TIMESTEPS)
    elif root is None:
        raise DataError(f"dataset {name!r} needs a data directory (--data-dir DIR)")
    elif name in ("cifar10", "cifar100"):
        ds = load_cifar(name, root, download=download)
    elif name == "nmnist":
        return load_nmnist(root, EVENT_TIMESTEPS, n_train=n_train, n_test=n_test, download=download)
    else:
        base = "fashion-mnist" if name == "fashion-mnist" else "mnist"
        if download:
            download_idx(root, base)
        ds = load_mnist(root, base)
        if name == "event-mnist":  # 10,000 MNIST images take 10 s to turn into frames: only those kept
            return to_events(_first(ds, n_train, n_test), EVENT_TIMESTEPS)
        if name == "mnist32":
            ds = to_cifar_shape(ds)
    return _first(ds, n_train, n_test)


def _first(ds: Dataset, n_train, n_test) -> Dataset:
    return ds.subset(n_train, n_test) if n_train or n_test else ds


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    images, target = _digits_arrays()
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    desc = f"8x8 digits (scikit-learn, embedded): {len(tr)} train / {len(te)} test, seeded shuffle (seed {seed})"
    return Dataset("digits", x[tr], y[tr], x[te], y[te], desc)


def _digits_arrays():
    """scikit-learn's digits as (1797, 64) pixel values 0..16 and (1797,) labels, read from
    the CSV file it ships (digits.csv.gz: 64 pixels then the label per row), as its
    ``load_digits`` reads them: importing ``sklearn.datasets`` alone takes over a second,
    which every command on the embedded data paid."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded 'digits' dataset needs scikit-learn (pip install scikit-learn)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    try:
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",", dtype=np.float64)
    except FileNotFoundError:  # another layout: ask scikit-learn itself
        from sklearn.datasets import load_digits as _sk

        d = _sk()
        return d.data, d.target
    return data[:, :-1], data[:, -1].astype(np.int64)
