"""Dataset loaders: embedded digits, IDX files in every layout, corrupt files, downloads."""

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from imcsim.datasets import DataError, download_idx, load_dataset, load_digits, load_mnist, read_idx

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test"


def _idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    data = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def _fake_mnist(folder, n_test=20, n_train=0, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    rng = np.random.default_rng(0)
    _idx(folder / f"t10k-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    _idx(folder / f"t10k-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_test), gz)
    if n_train:
        _idx(folder / f"train-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_train, 28, 28)), gz)
        _idx(folder / f"train-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_train), gz)


def test_digits_is_embedded_and_deterministic():
    a, b = load_digits(), load_digits()
    assert a.x_train.shape[1:] == (1, 8, 8) and a.num_classes == 10
    assert 0.0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1.0
    assert torch.equal(a.x_test, b.x_test) and len(a.y_train) + len(a.y_test) == 1797


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["", "raw", "MNIST/raw"])
def test_idx_layouts(tmp_path, gz, layout):
    _fake_mnist(tmp_path / layout if layout else tmp_path, n_test=20, n_train=30, gz=gz)
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert "official split" in ds.description


def test_test_split_only_is_cut_8_to_2(tmp_path):
    _fake_mnist(tmp_path, n_test=50)
    ds = load_mnist(tmp_path)
    assert len(ds.y_train) == 40 and len(ds.y_test) == 10
    assert "first 40 images train, last 10 evaluate" in ds.description


def test_real_values_against_independent_parse(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (12, 28, 28))
    _idx(tmp_path / "t10k-images-idx3-ubyte", img)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 12))
    ds = load_mnist(tmp_path)
    np.testing.assert_allclose(ds.x_train[3, 0].numpy(), img[3] / 255.0, rtol=1e-6)


def _write(images: bytes, labels: bytes = b"x"):
    def f(p):
        (p / "t10k-images-idx3-ubyte").write_bytes(images)
        (p / "t10k-labels-idx1-ubyte").write_bytes(labels)
    return f


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: None, "no mnist IDX files in"),
        (_write(b"\x00\x00\x08\x03" + b"\x00" * 5), "truncated"),
        (_write(b"GARBAGE!"), "is not an unsigned-byte IDX file"),
    ],
)
def test_corrupt_or_missing_files(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(DataError, match=match):
        load_mnist(tmp_path)


def test_size_mismatch_and_missing_directory(tmp_path):
    _fake_mnist(tmp_path, n_test=20)
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="is corrupt: header says"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match="data directory not found"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset("mnist")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/mnist-test")
def test_download_from_a_mirror_checks_md5_and_loads(tmp_path):
    # A local file:// mirror holding the real MNIST test files: the download code path is real.
    mirror = tmp_path / "mirror"
    shutil.copytree(SHARED, mirror)
    files = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    got = download_idx(tmp_path / "data", "mnist", mirrors=["file:///no/such/mirror/", mirror.as_uri() + "/"], files=files)
    assert [p.name for p in got] == files
    ds = load_mnist(tmp_path / "data")
    assert ds.x_train.shape == (8000, 1, 28, 28) and ds.x_test.shape == (2000, 1, 28, 28)
    # a mirror serving a different file is refused by the MD5 check
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / files[1]).write_bytes(b"not mnist")
    with pytest.raises(DataError, match="MD5 mismatch"):
        download_idx(tmp_path / "data2", "mnist", mirrors=[bad.as_uri() + "/"], files=files[1:])


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/mnist-test")
def test_real_mnist_matches_md5_and_shapes():
    ds = load_dataset("mnist", SHARED)
    assert ds.x_train.shape == (8000, 1, 28, 28) and int(ds.y_test.shape[0]) == 2000
    assert ds.y_train[:5].tolist() == [7, 2, 1, 0, 4]  # the famous first test labels


def test_cifar10_without_torchvision_is_a_clear_error(tmp_path):
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match=r"cifar10 needs torchvision \(pip install torchvision\)"):
            load_dataset("cifar10", tmp_path)
    else:  # with torchvision but no files and no download: a clear error too
        with pytest.raises(DataError, match="use --download to fetch it"):
            load_dataset("cifar10", tmp_path)
