"""Output folders that appear whole or not at all, and never destroy what they should not.

:class:`OutputDir` collects a command's files in a hidden temporary folder beside the target
(``.NAME.<random>.partial``) and moves it into place only when the command succeeds, so an
interrupted or failed run (Ctrl-C, SIGTERM included) leaves no half-written results.

Rules, all checked *before* any work starts:

* the target must be a plain path: not ``/``, the home directory, the working directory, a
  symbolic link, a file, or a name longer than the file system allows; its parent folder
  must be creatable and writable;
* an existing target is replaced only with ``force``, only if it is an imcsim output folder
  (it holds the marker file ``.imcsim-output`` that every output folder gets), and never if
  it contains an input of this run (a checkpoint, a data folder, a config);
* one run at a time per target: a lock file ``.NAME.lock`` beside it (``flock``, holding
  the owner's PID); a second concurrent run with the same target is refused at once, naming
  that PID. Processes a run forks (its workers) close the inherited lock, so only the run
  holds it; a lock still held after its owner died (by processes it left behind) is taken
  over, with a note. Stale ``.NAME.*.partial`` folders left by a killed run (SIGKILL, or a
  disk that filled before the marker was written) are removed by the next run of the same
  target;
* the replacement is atomic: the new folder and the old one are swapped in one
  ``renameat2(RENAME_EXCHANGE)`` call (Linux), so there is never a moment with neither;
  where the file system cannot swap, the two renames run with signals blocked;
* if the target appears meanwhile (another program made it) the run does not overwrite it:
  its results go to ``NAME.new-<time>`` and the message says so;
* files and folders get the usual permissions for the user's umask;
* a study's finished tasks are journalled in ``.NAME.journal.jsonl`` beside the target while
  it runs (``--resume`` reuses them after an interruption); the journal is removed when the
  folder is committed.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError
from ..io import _umask, storage_error, write_json, write_text
from .procs import alive

MARKER = ".imcsim-output"


# ------------------------------------------------------------------------------ renames

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(2); True if done, False if this system or file system cannot (EINVAL,
    ENOSYS, no libc symbol). Other errors raise OSError."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


class _SignalsBlocked:
    """Hold SIGINT / SIGTERM until the block ends (for two renames that belong together)."""

    SIGS = {signal.SIGINT, signal.SIGTERM}

    def __enter__(self):
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGS)

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
        return False


# ------------------------------------------------------------------------------ locks

_HELD_LOCKS: set[int] = set()  # lock file descriptors this process holds


def _close_inherited_locks() -> None:
    """In a forked child (a study worker): close the parent's lock descriptors, so that the
    lock belongs to the run alone (flock is released when every copy is closed; closing a
    copy does not release it for the parent)."""
    for fd in list(_HELD_LOCKS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _same_file(path: Path, fd: int) -> bool:
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ------------------------------------------------------------------------------ checks


def check_target(target, *, force: bool = False, inputs=()) -> Path:
    """Validate an output path before any work; returns it. Raises ConfigError."""
    raw = str(target)
    if not raw.strip():
        raise ConfigError("--out is empty; give the path of a new folder")
    t = Path(raw)
    here = Path.cwd().resolve()
    name_max = _name_max(here if not t.is_absolute() else Path("/"))
    for part in t.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"output path has a name {len(os.fsencode(part))} bytes long; "
                              f"the file system allows at most {name_max}")
    resolved = (t if t.is_absolute() else here / t).resolve() if not t.is_symlink() else None
    if t.is_symlink():
        what = "a dangling symbolic link" if not t.exists() else "a symbolic link"
        raise ConfigError(f"output path {raw!r} is {what}; give the path of a real folder")
    special = {Path("/"): "the root folder", Path.home().resolve(): "your home folder", here: "the working folder"}
    if resolved in special:
        raise ConfigError(f"refusing to use {special[resolved]} ({str(resolved)!r}) as the output folder; "
                          "give the path of a new folder inside it")
    if t.exists():
        if not t.is_dir():
            raise ConfigError(f"output path {raw!r} exists and is not a folder")
        if not force:
            raise ConfigError(f"output folder {raw!r} already exists; use --force to replace it")
        if not (t / MARKER).is_file():
            raise ConfigError(f"refusing to replace {raw!r}: it is not an imcsim output folder (no {MARKER} file in it)")
        for inp in inputs:
            if inp is None:
                continue
            ip = Path(inp).resolve()
            if ip == resolved or resolved in ip.parents:
                raise ConfigError(f"refusing to replace {raw!r}: it contains {str(inp)!r}, an input of this run")
    parent = resolved.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot create output folder {raw!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create output folder {raw!r}: no permission to write in {str(probe)!r}")
    return t


def _name_max(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


# ------------------------------------------------------------------------------ the folder


class OutputDir:
    def __init__(self, target, force: bool = False, cancelled=None, inputs=(), command: str = ""):
        self.cancelled = cancelled or (lambda: False)  # e.g. a Ctrl-C that a finalizer swallowed
        self.force = force
        self.target = check_target(target, force=force, inputs=inputs)
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create folder {str(parent)!r}: {e.strerror}") from None
        self._lock_path = parent / f".{self.target.name}.lock"
        self._lock_fd = self._lock()
        self.tmp = None
        try:
            self._clean_stale()
            try:
                self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".partial", dir=parent))
            except OSError as e:
                raise storage_error(e, parent / f".{self.target.name}.partial") from None
            os.chmod(self.tmp, 0o777 & ~_umask())
            write_json(self.tmp / MARKER, {"imcsim_output": True, "command": command, "pid": os.getpid(),
                                           "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except BaseException:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self._unlock()
            raise
        self.files: list[str] = []
        self.committed_to: Path | None = None

    # ---------------------------------------------------------------- locking
    def _lock(self):
        import fcntl

        path = self._lock_path
        for _ in range(5):  # a stale lock replaced, or a race with another run doing so: look again
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            except OSError as e:
                raise ConfigError(f"cannot create lock file {str(path)!r}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = _read_pid(fd)
                if owner is not None and not alive(owner):
                    if _same_file(path, fd):
                        try:
                            os.unlink(path)  # the new run locks a new file; the leftovers keep the old one
                        except FileNotFoundError:
                            pass
                    os.close(fd)
                    print(f"imcsim: note: the run that locked {str(self.target)!r} (PID {owner}) has ended, but "
                          "processes it started still hold its lock; taking it over", file=sys.stderr)
                    continue
                os.close(fd)
                who = f" (PID {owner})" if owner is not None else ""
                raise ConfigError(f"another imcsim run{who} is writing to {str(self.target)!r} (lock "
                                  f"{str(path)!r}); wait for it or choose another --out") from None
            if not _same_file(path, fd):  # replaced by a run that took over a stale lock meanwhile
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:  # a full disk: the lock holds all the same, its owner is only unnamed
                pass
            _HELD_LOCKS.add(fd)
            return fd
        raise ConfigError(f"cannot take the lock {str(path)!r}: it keeps changing (other runs with the same --out?)")

    def _unlock(self):
        if self._lock_fd is None:
            return
        if _same_file(self._lock_path, self._lock_fd):
            try:
                os.unlink(self._lock_path)
            except FileNotFoundError:
                pass
        _HELD_LOCKS.discard(self._lock_fd)
        os.close(self._lock_fd)
        self._lock_fd = None

    def _clean_stale(self):
        """Partial folders of this target left by a killed run (we hold the lock, so no live
        run owns one): those with the marker, and those the marker never reached (empty, or
        holding only the marker's temporary file)."""
        for p in self.target.parent.glob(f".{self.target.name}.*.partial"):
            if not p.is_dir() or p.is_symlink():
                continue
            if (p / MARKER).is_file() or all(c.name.startswith(f".{MARKER}.") and c.name.endswith(".tmp")
                                               and c.is_file() for c in p.iterdir()):
                shutil.rmtree(p, ignore_errors=True)

    @property
    def journal(self) -> Path:
        """Where a study run for this target journals its finished tasks."""
        return self.target.parent / f".{self.target.name}.journal.jsonl"

    # ---------------------------------------------------------------- writing
    def path(self, name: str) -> Path:
        self.files.append(name)
        return self.tmp / name

    def json(self, name: str, obj) -> Path:
        return write_json(self.path(name), obj)

    def text(self, name: str, text: str) -> Path:
        return write_text(self.path(name), text)

    def csv(self, name: str, rows: list[dict]) -> Path:
        return write_text(self.path(name), to_csv(rows))

    # ---------------------------------------------------------------- commit / abort
    def commit(self) -> Path:
        """Move the finished folder into place (replacing an old one only now, atomically)."""
        try:
            dst = self.target
            if dst.exists() or dst.is_symlink():
                if not self.force or not (dst / MARKER).is_file() or dst.is_symlink():
                    return self._set_aside()
                if _renameat2(self.tmp, dst, _RENAME_EXCHANGE):  # one atomic swap: never a moment with neither
                    shutil.rmtree(self.tmp, ignore_errors=True)  # the old folder, now under the temporary name
                else:
                    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
                    with _SignalsBlocked():
                        os.rename(dst, old / "x")
                        os.rename(self.tmp, dst)
                    shutil.rmtree(old, ignore_errors=True)
            elif not _renameat2(self.tmp, dst, _RENAME_NOREPLACE):
                if dst.exists():
                    return self._set_aside()
                os.rename(self.tmp, dst)
            self.committed_to = dst
            try:
                self.journal.unlink()
            except FileNotFoundError:
                pass
            return dst
        except FileExistsError:
            return self._set_aside()
        finally:
            self._unlock()

    def _set_aside(self) -> Path:
        alt = self.target.with_name(f"{self.target.name}.new-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while alt.exists():
            alt = alt.with_name(f"{self.target.name}.new-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
            n += 1
        os.rename(self.tmp, alt)
        self.committed_to = alt
        raise ConfigError(f"output folder {str(self.target)!r} appeared while this run was working (another program "
                          f"made it); this run's results are in {str(alt)!r} instead")

    def abort(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.cancelled():
            self.abort()
            raise KeyboardInterrupt
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def to_csv(rows: list[dict]) -> str:
    """Rows of flat dicts as CSV (columns in first-seen order; nested values as text)."""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (dict, list)) else v)
                    for k, v in r.items()})
    return buf.getvalue()


def markdown_table(rows: list[dict], cols: list[str], headers: list[str] | None = None, fmt: dict | None = None) -> str:
    fmt = fmt or {}
    headers = headers or cols
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            f = fmt.get(c)
            cells.append(f(v) if f else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
