"""Whether a process still runs, by PID (shared by the output lock and the study workers)."""

from __future__ import annotations

import os


def started(pid: int):
    """A token of when process ``pid`` started (Linux: clock ticks after boot, from /proc),
    or None if it has ended -- a zombie (ended, not yet reaped) counts as ended. Comparing
    tokens tells a reused PID from the process that had it. Without /proc: whether the PID
    exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X") else fields[19]
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return b"?"


def alive(pid: int) -> bool:
    return started(pid) is not None
