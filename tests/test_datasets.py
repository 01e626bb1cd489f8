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


# ------------------------------------------------------------------------ CIFAR (binary)


def _cifar_records(rng, n, label_bytes, classes):
    """n records in the binary release's layout, and the images / labels they encode."""
    img = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    fine = rng.integers(0, classes, n, dtype=np.uint8)
    coarse = rng.integers(0, 20, n, dtype=np.uint8)
    recs = bytearray()
    for i in range(n):
        recs += (bytes([coarse[i], fine[i]]) if label_bytes == 2 else bytes([fine[i]]))
        recs += img[i, 0].tobytes() + img[i, 1].tobytes() + img[i, 2].tobytes()  # R, G, B planes, row-major
    return bytes(recs), img, fine


def _cifar_archive(path, name="cifar10", n_per_file=7, extra=None, seed=0):
    """A .tar.gz with the release's member names and byte layout; returns the expected
    train / test images and labels."""
    import io
    import tarfile

    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, train, test, lb, k = "cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], \
            ["test_batch.bin"], 1, 10
    else:
        folder, train, test, lb, k = "cifar-100-binary", ["train.bin"], ["test.bin"], 2, 100
    want = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(member, data):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add(f"{folder}/batches.meta.txt", b"airplane\nautomobile\n")
        for split, names in (("train", train), ("test", test)):
            imgs, labels = [], []
            for n in names:
                data, img, lab = _cifar_records(rng, n_per_file, lb, k)
                add(f"{folder}/{n}", data)
                imgs.append(img)
                labels.append(lab)
            want[split] = (np.concatenate(imgs), np.concatenate(labels))
        for member, data in (extra or {}).items():
            add(member, data)
    return want


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_binary_release_byte_layout(tmp_path, name):
    archive = tmp_path / ("cifar-10-binary.tar.gz" if name == "cifar10" else "cifar-100-binary.tar.gz")
    want = _cifar_archive(archive, name)
    ds = load_dataset(name, tmp_path)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        img, lab = want[split]
        assert x.shape == (len(lab), 3, 32, 32) and x.dtype == torch.float32
        # pixel (c, r, col) of record i is byte 1(+1) + 1024 c + 32 r + col: compare in integers
        assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(img))
        assert y.tolist() == lab.astype(int).tolist()
    assert ds.num_classes <= (10 if name == "cifar10" else 100)
    assert "binary release" in ds.description and f"{len(ds.y_train)} train" in ds.description
    # the extracted folder gives the same tensors
    import tarfile

    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    ds2 = load_dataset(name, tmp_path / "x")
    assert torch.equal(ds2.x_train, ds.x_train) and torch.equal(ds2.y_test, ds.y_test)


def test_cifar_archives_that_are_not_the_release_are_one_line_errors(tmp_path):
    # truncated archive
    good = tmp_path / "good.tar.gz"
    _cifar_archive(good)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "cifar-10-binary.tar.gz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        load_dataset("cifar10", cut)
    # not gzip at all
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "cifar-10-binary.tar.gz").write_bytes(b"hello")
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        load_dataset("cifar10", junk)
    # a batch file that is not a whole number of records, labels out of range
    folder = tmp_path / "ex" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / n).write_bytes(_cifar_records(rng, 3, 1, 10)[0])
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-5])
    with pytest.raises(DataError, match=r"test_batch.bin is truncated or corrupt: 9214 bytes is not a whole number "
                                        r"of 3073-byte records"):
        load_dataset("cifar10", tmp_path / "ex")
    bad = bytearray(_cifar_records(rng, 3, 1, 10)[0])
    bad[3073] = 10
    (folder / "test_batch.bin").write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"CIFAR-10 labels must be 0..9, found 10"):
        load_dataset("cifar10", tmp_path / "ex")
    # nothing there; the python release is named and refused
    empty = tmp_path / "py"
    empty.mkdir()
    (empty / "cifar-10-python.tar.gz").write_bytes(b"x")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz is the python version, a pickle"):
        load_dataset("cifar10", empty)


def test_cifar_is_never_unpickled(tmp_path, monkeypatch):
    """An archive that also carries the python (pickle) release's files, one of which would
    create a file if unpickled: loading reads the binary files only, and never unpickles."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Evil())
    _cifar_archive(tmp_path / "cifar-10-binary.tar.gz",
                   extra={"cifar-10-batches-py/data_batch_1": payload, "cifar-10-batches-bin/data_batch_1": payload})

    def refuse(*a, **k):
        raise AssertionError("a CIFAR loader unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape[0] == 35 and not marker.exists()


def test_cifar_download_checks_md5_then_loads(tmp_path, monkeypatch):
    from imcsim.datasets import cifar
    from imcsim.datasets.download import md5_of

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    want = _cifar_archive(mirror / "cifar-10-binary.tar.gz")
    real = cifar.RELEASES["cifar10"]
    # the official MD5: the generated archive is refused, and nothing is left under its name
    with pytest.raises(DataError, match="MD5 mismatch"):
        cifar.load_cifar("cifar10", tmp_path / "d1", download=True, mirrors=[mirror.as_uri()])
    assert not (tmp_path / "d1" / "cifar-10-binary.tar.gz").exists() and not list((tmp_path / "d1").iterdir())
    # with the generated archive's MD5 the same code path downloads, verifies and loads it
    monkeypatch.setitem(cifar.RELEASES, "cifar10",
                        cifar.CifarRelease(**{**real.__dict__, "md5": md5_of(mirror / "cifar-10-binary.tar.gz")}))
    monkeypatch.setattr(cifar, "CIFAR_MIRRORS", ("file:///no/such/mirror", mirror.as_uri()))
    ds = load_dataset("cifar10", tmp_path / "d2", download=True)
    assert ds.y_test.tolist() == want["test"][1].astype(int).tolist()


# ----------------------------------------------------------------------------- N-MNIST


def _nmnist_bytes(events):
    """(x, y, p, t) tuples -> the release's 40-bit events, written bit by bit."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def _nmnist_tree(root, split, per_digit=2, seed=0, digits=range(10)):
    """Random samples in <split>/<digit>/<id>.bin; returns {relative name: (label, events)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in digits:
        (root / split / str(d)).mkdir(parents=True, exist_ok=True)
        for j in range(per_digit):
            n = int(rng.integers(5, 40))
            ev = sorted(zip(rng.integers(0, 34, n).tolist(), rng.integers(0, 34, n).tolist(),
                            rng.integers(0, 2, n).tolist(), rng.integers(0, 300_000, n).tolist()), key=lambda e: e[3])
            name = f"{split}/{d}/{j:05d}.bin"
            (root / name).write_bytes(_nmnist_bytes(ev))
            out[name] = (d, ev)
    return out


def _frames_by_hand(ev, T):
    f = np.zeros((T, 2, 34, 34), dtype=np.float32)
    t_end = max(e[3] for e in ev) + 1
    for x, y, p, t in ev:
        f[t * T // t_end, 0 if p == 1 else 1, y, x] = 1
    return f


def test_nmnist_events_and_frames_against_hand_decoding(tmp_path):
    from imcsim.datasets.nmnist import read_events

    ev = [(3, 4, 1, 0), (33, 0, 0, 70_000), (0, 33, 1, 0x7FFFFF)]
    got = read_events(_nmnist_bytes(ev))
    assert got["x"].tolist() == [3, 33, 0] and got["y"].tolist() == [4, 0, 33]
    assert got["p"].tolist() == [1, 0, 1] and got["t"].tolist() == [0, 70_000, 0x7FFFFF]
    # an overflow marker (y = 240) adds 2**13 us to every later event and is dropped
    got = read_events(_nmnist_bytes([(1, 1, 0, 100), (0, 240, 0, 0), (2, 2, 1, 50)]))
    assert got["t"].tolist() == [100, 50 + 8192] and got["x"].tolist() == [1, 2]
    tree = _nmnist_tree(tmp_path, "Train", per_digit=2)
    tree.update(_nmnist_tree(tmp_path, "Test", per_digit=1, seed=1))
    ds = load_dataset("nmnist", tmp_path)
    assert ds.x_train.shape == (10, 20, 2, 34, 34) and ds.sample_dim == 1 and ds.in_shape == (2, 34, 34)
    assert "official split, 20 train / 10 test" in ds.description
    # each sample's frames equal a by-hand binning of its events; its label is its folder
    from imcsim.datasets.nmnist import _Split

    order = _Split(tmp_path, "Train").names
    assert sorted(order) == sorted(n for n in tree if n.startswith("Train"))
    assert order != sorted(order)  # a fixed shuffle, not digit-sorted
    for i, name in enumerate(order):
        label, ev = tree[name]
        assert int(ds.y_train[i]) == label
        assert np.array_equal(ds.x_train[:, i].numpy(), _frames_by_hand(ev, 10))
    # the same files zipped as released give the same tensors; limits decode only a prefix
    import zipfile

    (tmp_path / "z").mkdir()
    for split in ("Train", "Test"):
        with zipfile.ZipFile(tmp_path / "z" / f"{split}.zip", "w") as z:
            for name in tree:
                if name.startswith(split):
                    z.write(tmp_path / name, name)
    dz = load_dataset("nmnist", tmp_path / "z", n_train=5, n_test=3)
    assert torch.equal(dz.x_train, ds.x_train[:, :5]) and torch.equal(dz.y_test, ds.y_test[:3])


def test_nmnist_bad_files_are_one_line_errors(tmp_path):
    _nmnist_tree(tmp_path, "Test", per_digit=1)
    (tmp_path / "Test" / "3" / "00000.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match=r"is truncated or corrupt: 3 bytes is not a whole number of 5-byte events"):
        load_dataset("nmnist", tmp_path)
    (tmp_path / "Test" / "3" / "00000.bin").write_bytes(_nmnist_bytes([(40, 1, 0, 5)]))
    with pytest.raises(DataError, match=r"address \(40, 1\) is outside the 34x34 sensor"):
        load_dataset("nmnist", tmp_path)
    with pytest.raises(DataError, match="no N-MNIST files"):
        load_dataset("nmnist", tmp_path / "Test")
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "Test.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match="is not a readable zip archive"):
        load_dataset("nmnist", tmp_path / "z")


def test_nmnist_test_split_only_is_cut_8_to_2(tmp_path):
    _nmnist_tree(tmp_path, "Test", per_digit=1)
    ds = load_dataset("nmnist", tmp_path)
    assert ds.x_train.shape[1] == 8 and ds.x_test.shape[1] == 2
    assert "test split only" in ds.description


# ------------------------------------------------------------------------------ mnist32


def test_mnist32_is_mnist_padded_and_repeated(tmp_path):
    _fake_mnist(tmp_path, n_test=20)
    m, m32 = load_dataset("mnist", tmp_path), load_dataset("mnist32", tmp_path)
    assert m32.x_train.shape == (16, 3, 32, 32) and m32.in_shape == (3, 32, 32)
    for c in range(3):
        assert torch.equal(m32.x_train[:, c, 2:30, 2:30], m.x_train[:, 0])
    border = m32.x_train.clone()
    border[:, :, 2:30, 2:30] = 0
    assert float(border.abs().sum()) == 0.0 and torch.equal(m32.y_test, m.y_test)


# ------------------------------------------------------------------------------ event frames


@pytest.mark.parametrize("name", ["event-digits", "event-mnist"])
def test_event_frames_of_the_first_samples_equal_those_of_the_whole_set(tmp_path, name):
    """load_dataset turns only the samples kept into frames (10,000 MNIST images took 10 s):
    the same frames, labels and description as converting everything and keeping the first."""
    from imcsim.datasets import to_events

    _fake_mnist(tmp_path, n_test=20)
    whole = to_events(load_digits() if name == "event-digits" else load_mnist(tmp_path, "mnist"), 10)
    for n_train, n_test in ((7, 3), (None, 2), (5, None)):
        got = load_dataset(name, None if name == "event-digits" else tmp_path, n_train=n_train, n_test=n_test)
        want = whole.subset(n_train, n_test)
        assert got.x_train.shape[:2] == (10, n_train or whole.x_train.shape[1])
        assert torch.equal(got.x_train, want.x_train) and torch.equal(got.x_test, want.x_test)
        assert torch.equal(got.y_train, want.y_train) and torch.equal(got.y_test, want.y_test)
        assert got.description == want.description and got.sample_dim == 1


def test_each_images_event_frames_are_its_own_whatever_the_batch():
    """One sampling grid serves every image of a batch: each image's frames equal those it
    gets alone, and the frames are 0/1 spikes of both polarities."""
    from imcsim.datasets import saccade_events

    x = load_digits().x_test[:12]
    together = saccade_events(x, 5)
    assert together.shape == (5, 12, 2, 14, 14) and set(together.unique().tolist()) == {0.0, 1.0}
    assert float(together[:, :, 0].sum()) > 0 and float(together[:, :, 1].sum()) > 0
    for i in range(12):
        assert torch.equal(saccade_events(x[i:i + 1], 5)[:, 0], together[:, i])


def test_digits_read_from_the_csv_file_equal_scikit_learns_loader(monkeypatch):
    """load_digits reads the CSV file scikit-learn ships instead of importing sklearn.datasets
    (over a second at every command's start): the same images and labels, in the same split."""
    import importlib.util

    from sklearn.datasets import load_digits as sk

    d, ref = load_digits(), sk()
    x = torch.tensor(ref.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(ref.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # the split the docstring states
    assert torch.equal(d.x_test, x[perm[:359]]) and torch.equal(d.x_train, x[perm[359:]])
    assert torch.equal(d.y_test, y[perm[:359]]) and torch.equal(d.y_train, y[perm[359:]])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match=r"the embedded 'digits' dataset needs scikit-learn \(pip install scikit-learn\)"):
        load_digits()
