"""N-MNIST (Orchard et al., Front. Neurosci. 2015) from its original binary event files.

Each sample is one file ``<split>/<digit>/<id>.bin`` of 40-bit (5-byte) events: byte 0 the
x address, byte 1 the y address (0..33), bit 7 of byte 2 the polarity (1: ON, brightness
up), and the remaining 23 bits the timestamp in microseconds, big-endian. An event whose y
address is 240 is a timestamp-overflow marker: every later timestamp gains 2**13 us (as the
dataset's own MATLAB reader does). The splits are read from ``Train/`` and ``Test/`` folders
or straight from the released ``Train.zip`` / ``Test.zip`` (nothing extracted).

Frames: a sample's recording [0, t_last] is cut into T equal time bins and a pixel of
channel 0 (ON) or 1 (OFF) is 1 in a bin that holds any of its events, giving
(T, N, 2, 34, 34) 0/1 frames like the generated event datasets. Samples are put in a fixed
seeded order (the files are sorted by digit), so the first N are a fair subset.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import Dataset
from .download import download_files

SIZE = 34
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 13
MAX_FILE_BYTES = 1 << 24  # no N-MNIST sample comes near (the largest hold a few thousand events)
# The release as tonic fetches it (Dropbox folder of the dataset's authors); MD5 of each zip.
NMNIST_URLS = {"Train.zip": "https://www.dropbox.com/sh/tg2ljlbmtzygrag/AABlMOuR15ugeOxMCX0Pvoxga/Train.zip?dl=1",
                  "Test.zip": "https://www.dropbox.com/sh/tg2ljlbmtzygrag/AADSKgJ2CjaBWh75HnTNZyhca/Test.zip?dl=1"}
NMNIST_MD5 = {"Train.zip": "20959b8e626244a1b502305a9e6e2031", "Test.zip": "69ca8762b2fe404d9b9bad1103e97832"}
ORDER_SEED = 0


def read_events(data: bytes, where: str = "N-MNIST file") -> dict[str, np.ndarray]:
    """One sample's bytes -> events x, y, p (1 = ON), t (us, overflow markers applied and
    dropped)."""
    if len(data) % 5:
        raise DataError(f"{where} is truncated or corrupt: {len(data)} bytes is not a whole number of 5-byte events")
    a = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = a[:, 0], a[:, 1]
    p = a[:, 2] >> 7
    t = ((a[:, 2] & 0x7F) << 16) | (a[:, 3] << 8) | a[:, 4]
    marker = y == OVERFLOW_Y
    if marker.any():
        t = t + OVERFLOW_US * np.cumsum(marker)
        keep = ~marker
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    if x.size and (x.max() >= SIZE or y.max() >= SIZE):
        raise DataError(f"{where} is not an N-MNIST sample: address ({int(x.max())}, {int(y.max())}) is outside the "
                        f"{SIZE}x{SIZE} sensor")
    return {"x": x, "y": y, "p": p, "t": t}


def frames_of(ev: dict[str, np.ndarray], timesteps: int) -> torch.Tensor:
    """Events -> (T, 2, 34, 34) 0/1 frames; bin k holds t in [k, k+1) * (t_last + 1) / T."""
    out = np.zeros((timesteps, 2, SIZE, SIZE), dtype=np.float32)
    if ev["t"].size:
        k = ev["t"] * timesteps // (int(ev["t"].max()) + 1)
        out[k, 1 - ev["p"], ev["y"], ev["x"]] = 1.0
    return torch.from_numpy(out)


class _Split:
    """The sample files of one split, from a folder or a zip: sorted names with labels."""

    def __init__(self, root: Path, split: str):
        self.split, self.zip, self.folder = split, None, None
        if (root / split).is_dir():
            self.folder = root / split
            names = [str(p.relative_to(root)) for p in sorted(self.folder.glob("[0-9]/*.bin"))]
            self.source = f"{split}/"
        elif (root / f"{split}.zip").is_file():
            try:
                self.zip = zipfile.ZipFile(root / f"{split}.zip")
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{str(root / f'{split}.zip')!r} is not a readable zip archive ({e})") from None
            names = sorted(i.filename for i in self.zip.infolist() if i.filename.endswith(".bin"))
            self.source = f"{split}.zip"
        else:
            raise FileNotFoundError(split)
        self.root = root
        self.names = [n for n in names if _label(n) is not None]
        if not self.names:
            raise DataError(f"N-MNIST {self.source} in {str(root)!r} holds no <digit>/<id>.bin sample files")
        order = np.random.default_rng(ORDER_SEED).permutation(len(self.names))
        self.names = [self.names[i] for i in order]

    def read(self, name: str) -> bytes:
        where = f"{self.source}:{name}" if self.zip else str(self.root / name)
        try:
            if self.zip is not None:
                info = self.zip.getinfo(name)
                if info.file_size > MAX_FILE_BYTES:
                    raise DataError(f"{where} declares {info.file_size} bytes, more than any N-MNIST sample")
                return self.zip.read(name)
            path = self.root / name
            if path.stat().st_size > MAX_FILE_BYTES:
                raise DataError(f"{where} is {path.stat().st_size} bytes, more than any N-MNIST sample")
            return path.read_bytes()
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise DataError(f"{where} is truncated or corrupt ({e})") from None
        except OSError as e:
            raise DataError(f"cannot read {where}: {e.strerror or e}") from None

    def load(self, timesteps: int, names: list[str]):
        x = torch.zeros(timesteps, len(names), 2, SIZE, SIZE)
        for i, n in enumerate(names):
            x[:, i] = frames_of(read_events(self.read(n), f"{self.source}:{n}"), timesteps)
        y = torch.tensor([_label(n) for n in names], dtype=torch.int64)
        return x, y

    def close(self):
        if self.zip is not None:
            self.zip.close()


def _label(name: str) -> int | None:
    parts = name.replace("\\", "/").split("/")
    return int(parts[-2]) if len(parts) >= 2 and len(parts[-2]) == 1 and parts[-2].isdigit() else None


def load_nmnist(root, timesteps: int = 10, *, n_train: int | None = None, n_test: int | None = None,
                download: bool = False) -> Dataset:
    """N-MNIST as (T, N, 2, 34, 34) frames. ``n_train`` / ``n_test``: decode only the first
    samples of the fixed order (frames take T * 9.2 KB per sample in float32)."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= 1000:
        raise DataError(f"N-MNIST needs timesteps in 1..1000, got {timesteps!r}")
    root = Path(root)
    if download:
        need = [n for n in NMNIST_MD5 if not (root / n.removesuffix(".zip")).is_dir()]
        if need:
            download_files(root, NMNIST_MD5, files=need, urls={n: [NMNIST_URLS[n]] for n in need})
    if not root.is_dir():
        raise DataError(f"data directory not found: {str(root)!r}")
    try:
        test = _Split(root, "Test")
    except FileNotFoundError:
        raise DataError(f"no N-MNIST files in {str(root)!r}: expected Test/ (and Train/) folders of <digit>/<id>.bin "
                        f"files, or Test.zip / Train.zip as released") from None
    try:
        train = _Split(root, "Train")
    except FileNotFoundError:
        train = None
    try:
        if train is not None:
            xtr, ytr = train.load(timesteps, train.names[:n_train])
            xte, yte = test.load(timesteps, test.names[:n_test])
            how = f"official split, {len(train.names)} train / {len(test.names)} test files"
        else:  # the test split only: 80 % train, 20 % evaluate, as for MNIST
            cut = len(test.names) * 4 // 5
            if cut < 1 or cut == len(test.names):
                raise DataError(f"N-MNIST {test.source} in {str(root)!r} holds only {len(test.names)} samples")
            names = test.names
            xtr, ytr = test.load(timesteps, names[:cut][:n_train])
            xte, yte = test.load(timesteps, names[cut:][:n_test])
            how = f"test split only: first {cut} (of the fixed order) train, last {len(names) - cut} evaluate"
    finally:
        test.close()
        if train is not None:
            train.close()
    desc = (f"N-MNIST ({root}, {test.source}): {how}; {timesteps} frames x 2 polarities x {SIZE}x{SIZE} per sample "
            f"(each recording cut into {timesteps} equal time bins)")
    return Dataset("nmnist", xtr, ytr, xte, yte, desc, sample_dim=1)
