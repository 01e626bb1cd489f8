"""Downloads torchvision-style: several mirrors in turn, an MD5 check of what arrived, and
an atomic rename into place -- a file that fails the check never appears under its name."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..io import _umask, storage_error

CHUNK = 1 << 20


def md5_of(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download_files(root, md5: dict[str, str], mirrors=(), files=None, urls=None) -> list[Path]:
    """Fetch ``files`` (default: every name in ``md5``) into ``root``, skipping ones already
    there with the right MD5, from ``mirror/name`` for each mirror in turn (or from the
    full addresses ``urls[name]``). Each file is streamed to a temporary file beside its
    destination while hashed, and renamed into place only when its MD5 matches."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for fname in files or md5:
        dest = root / fname
        if dest.is_file() and md5_of(dest) == md5[fname]:
            out.append(dest)
            continue
        errors = []
        for url in (urls or {}).get(fname) or [b.rstrip("/") + "/" + fname for b in mirrors]:
            got = _fetch(url, dest, md5[fname], errors)
            if got:
                out.append(dest)
                break
        else:
            raise DataError(f"could not download {fname}: " + "; ".join(errors))
    return out


def _fetch(url: str, dest: Path, want: str, errors: list) -> bool:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise storage_error(e, dest, 0) from None
    ok = False
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; data files follow the umask
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as f:
            try:
                r = urllib.request.urlopen(url, timeout=60)
            except Exception as e:  # noqa: BLE001 - an unreachable mirror: try the next one
                errors.append(f"{url}: {e}")
                return False
            with r:
                while True:
                    try:
                        block = r.read(CHUNK)
                    except Exception as e:  # noqa: BLE001 - a broken transfer: try the next mirror
                        errors.append(f"{url}: {e}")
                        return False
                    if not block:
                        break
                    h.update(block)
                    try:
                        f.write(block)
                    except OSError as e:  # a full disk is not the mirror's fault: say so and stop
                        raise storage_error(e, dest, len(block)) from None
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise storage_error(e, dest, 0) from None
        if h.hexdigest() != want:
            errors.append(f"{url}: MD5 mismatch (got {h.hexdigest()}, expected {want})")
            return False
        os.replace(tmp, dest)
        ok = True
        return True
    finally:
        if not ok and os.path.exists(tmp):
            os.unlink(tmp)
