"""Result files: written atomically (temp file + rename), never silently overwritten."""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "the file size limit (ulimit -f) is reached"}


def free_bytes(path) -> int | None:
    """Bytes free to this user on the file system holding ``path`` (or its nearest existing
    parent); None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def storage_error(e: OSError, path, needed: int | None = None) -> OSError:
    """``e`` as one line naming the file, the bytes it needed and the bytes free, if it is a
    full disk, quota or file-size limit; otherwise ``e`` itself."""
    from .errors import StorageError

    if e.errno not in _FULL or isinstance(e, StorageError):
        return e
    free = free_bytes(path)
    need = f" ({needed:,} bytes to write)" if needed is not None else ""
    room = f"; {free:,} bytes free on its file system" if free is not None and e.errno != errno.EFBIG else ""
    err = StorageError(e.errno, f"cannot write {str(path)!r}{need}: {_FULL[e.errno]}{room}")
    err.filename = str(path)
    return err


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    old = os.umask(0o022)
    os.umask(old)
    return old


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise storage_error(e, path, len(data)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; results follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise storage_error(e, path, len(data)) from None
        raise


def machine_info() -> dict:
    """Where a result was measured: Python, torch, cores, threads, processor, and the
    imcsim source it ran (:func:`source_revision`)."""
    import platform

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "imcsim_source": source_revision()}


@functools.lru_cache(maxsize=None)
def source_revision(root: str | None = None) -> dict | None:
    """The git commit of the checkout imcsim runs from (``root``: default, the folder above
    the package) and whether its tracked files differ from it: ``{"commit": sha, "modified":
    bool}``, so that a benchmark's JSON names the code it measured; None for an installed
    copy (no ``.git``) or where git is not there. Looked up once per process."""
    top = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    if not (top / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(top), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        diff = subprocess.run(["git", "-C", str(top), "status", "--porcelain", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode or diff.returncode:
        return None
    return {"commit": head.stdout.strip(), "modified": bool(diff.stdout.strip())}


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; readers see the old file or the new one."""
    _atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def write_json(path, obj) -> Path:
    """Standard JSON (no NaN / Infinity: non-finite numbers are written as null); floats
    rounded to 8 significant digits (float32 carries about 7: noise such as 87.99999952 is not a result)."""
    return write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n")


def _finite(o):
    import math

    if isinstance(o, float):
        return float(format(o, ".8g")) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return _finite(o.item())
        if isinstance(o, np.ndarray):
            return _finite(o.tolist())
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        if isinstance(o, torch.Tensor):
            return _finite(o.tolist())
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")
