"""Output folders that appear whole or not at all.

:class:`OutputDir` collects a command's files in a hidden temporary folder beside the
target and moves it into place only when the command succeeds, so an interrupted or failed
run (Ctrl-C included) leaves no half-written results. An existing folder is replaced only
with ``force``.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ..io import write_json, write_text


class OutputDir:
    def __init__(self, target, force: bool = False, cancelled=None):
        self.cancelled = cancelled or (lambda: False)  # e.g. a Ctrl-C that a finalizer swallowed
        self.target = Path(target)
        if self.target.exists() and not force:
            raise ConfigError(f"output folder {str(self.target)!r} already exists; use --force to replace it")
        if self.target.exists() and not self.target.is_dir():
            raise ConfigError(f"output path {str(self.target)!r} exists and is not a folder")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".partial", dir=self.target.parent))
        self.files: list[str] = []

    def path(self, name: str) -> Path:
        self.files.append(name)
        return self.tmp / name

    def json(self, name: str, obj) -> Path:
        return write_json(self.path(name), obj)

    def text(self, name: str, text: str) -> Path:
        return write_text(self.path(name), text)

    def csv(self, name: str, rows: list[dict]) -> Path:
        return write_text(self.path(name), to_csv(rows))

    def commit(self) -> Path:
        """Move the finished folder into place (replacing an old one only now)."""
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            self.target.rename(old)
        self.tmp.rename(self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

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
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
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
