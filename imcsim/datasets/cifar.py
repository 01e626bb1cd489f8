"""CIFAR-10 and CIFAR-100 from their official *binary* releases (plain bytes).

The "python version" of CIFAR is a pickle, and unpickling a file runs whatever code it
names; it is never read here. Each binary record is the label byte(s) then 3,072 image bytes
(1,024 red, 1,024 green, 1,024 blue, each a 32x32 row-major plane):

* ``cifar-10-binary.tar.gz`` -> ``cifar-10-batches-bin/data_batch_1..5.bin`` (train) and
  ``test_batch.bin``; 1 label byte (0..9).
* ``cifar-100-binary.tar.gz`` -> ``cifar-100-binary/train.bin`` and ``test.bin``; 2 label
  bytes, coarse (0..19) then fine (0..99); the fine label is used.

The files are read straight from the archive in ``root`` (nothing extracted), or from the
extracted folder if it is there. MD5 sums of the archives: CIFAR's page / torchvision.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import Dataset
from .download import download_files

CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
IMAGE_BYTES = 3 * 32 * 32
MAX_RECORDS = 60_000  # per file; the official files hold 10,000 (CIFAR-10) or 50,000 (CIFAR-100 train)


@dataclass(frozen=True)
class CifarRelease:
    title: str
    archive: str
    md5: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # the label used is the last of them
    classes: int
    pickled: tuple[str, ...]  # names of the python (pickle) release, to say why it is not read


RELEASES = {
    "cifar10": CifarRelease("CIFAR-10", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530",
                            "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                            ("test_batch.bin",), 1, 10, ("cifar-10-python.tar.gz", "cifar-10-batches-py")),
    "cifar100": CifarRelease("CIFAR-100", "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8",
                             "cifar-100-binary", ("train.bin",), ("test.bin",), 2, 100,
                             ("cifar-100-python.tar.gz", "cifar-100-python")),
}


def load_cifar(name: str, root, download: bool = False, mirrors=None) -> Dataset:
    """CIFAR-10 (``cifar10``) or CIFAR-100 (``cifar100``) from the binary release in ``root``;
    ``download``: fetch the archive first (MD5-checked) if neither it nor the extracted
    folder is there."""
    rel = RELEASES[name]
    root = Path(root)
    if not download and not root.is_dir():
        raise DataError(f"data directory not found: {str(root)!r}")
    files = _extracted(root, rel)
    if files is None:
        archive = root / rel.archive
        if download and not archive.is_file():
            download_files(root, {rel.archive: rel.md5}, mirrors or CIFAR_MIRRORS)
        if not archive.is_file():
            raise DataError(_missing(root, rel))
        blobs, source = _from_archive(archive, rel), rel.archive
    else:
        blobs, source = {n: _read_file(p) for n, p in files.items()}, f"{rel.folder}/"
    (xtr, ytr), (xte, yte) = (_records(blobs, names, rel) for names in (rel.train, rel.test))
    desc = f"{rel.title} (binary release, {root}/{source}): {len(ytr)} train / {len(yte)} test"
    return Dataset(name, xtr, ytr, xte, yte, desc)


def _extracted(root: Path, rel: CifarRelease) -> dict[str, Path] | None:
    for folder in (root / rel.folder, root):
        paths = {n: folder / n for n in rel.train + rel.test}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def _missing(root: Path, rel: CifarRelease) -> str:
    msg = (f"no {rel.title} binary release in {str(root)!r}: expected {rel.archive} or {rel.folder}/ "
           f"({', '.join(rel.train + rel.test)}); use --download to fetch it")
    found = [p for p in rel.pickled if (root / p).exists()]
    if found:
        msg += (f". {found[0]} is the python version, a pickle that would run code when loaded: imcsim reads the "
                f"binary version only")
    return msg


def _read_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_RECORDS * (IMAGE_BYTES + 2):
        raise DataError(f"{str(path)!r} is {size} bytes, more than any CIFAR file ({MAX_RECORDS} records)")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r}: {e.strerror or e}") from None


def _from_archive(archive: Path, rel: CifarRelease) -> dict[str, bytes]:
    """The wanted members' bytes, read in one pass over the (gzip'd) tar; nothing extracted."""
    want = {f"{rel.folder}/{n}": n for n in rel.train + rel.test}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                name = want.get(m.name.lstrip("./"))
                if name is None:
                    continue
                if not m.isfile():
                    raise DataError(f"{archive}: member {m.name!r} is not a regular file")
                if m.size > MAX_RECORDS * (IMAGE_BYTES + rel.label_bytes):
                    raise DataError(f"{archive}: member {m.name!r} declares {m.size} bytes, more than any "
                                    f"{rel.title} file")
                data = tar.extractfile(m).read()
                if len(data) != m.size:
                    raise EOFError(f"member {m.name!r} is cut short")
                out[name] = data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise DataError(f"cannot read {str(archive)!r}: {e.strerror or e}") from None
        raise DataError(f"{str(archive)!r} is a truncated or corrupt archive ({e})") from None
    missing = [n for n in rel.train + rel.test if n not in out]
    if missing:
        raise DataError(f"{str(archive)!r} is not the {rel.title} binary release: it has no {rel.folder}/{missing[0]}")
    return out


def _records(blobs: dict[str, bytes], names, rel: CifarRelease):
    """Concatenated records of ``names`` -> images (N, 3, 32, 32) in [0, 1], labels (N,)."""
    rec = rel.label_bytes + IMAGE_BYTES
    parts = []
    for n in names:
        data = blobs[n]
        if len(data) == 0 or len(data) % rec:
            raise DataError(f"{rel.title} file {n} is truncated or corrupt: {len(data)} bytes is not a whole number "
                            f"of {rec}-byte records")
        parts.append(np.frombuffer(data, dtype=np.uint8).reshape(-1, rec))
    arr = np.concatenate(parts)
    labels = arr[:, rel.label_bytes - 1].astype(np.int64)
    if labels.max() >= rel.classes:
        raise DataError(f"{rel.title} labels must be 0..{rel.classes - 1}, found {int(labels.max())} "
                        f"(in {', '.join(names)})")
    if rel.label_bytes == 2 and arr[:, 0].max() >= 20:
        raise DataError(f"{rel.title} coarse labels must be 0..19, found {int(arr[:, 0].max())}")
    x = torch.from_numpy(arr[:, rel.label_bytes:].copy()).view(-1, 3, 32, 32).float().div_(255.0)
    return x, torch.from_numpy(labels)
