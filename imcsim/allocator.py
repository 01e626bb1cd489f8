"""glibc malloc settings for the command line's long runs (evaluate, timesteps, studies),
and handing freed memory back after a conversion.

torch takes every CPU tensor from malloc. glibc serves a block above its mmap threshold
(128 KiB at start, raised adaptively up to 32 MiB) with fresh pages from the kernel and
hands them back when the block is freed, so a chip's forward pass at batch 256, whose
temporaries are MiB to tens of MiB, has the kernel fault in and zero the same pages again
for every layer and timestep. Fixing the threshold at its 64-bit maximum (32 MiB) and never
trimming the heap keeps freed blocks for reuse. The results are the same bits; what
changes is time in the kernel (``sys``) and the resident set, which stays at its high-water
mark instead of shrinking after a peak. Measured figures: docs/architecture.md
("Process settings"). ``IMCSIM_MALLOC=default`` keeps glibc's own settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)
MMAP_THRESHOLD = 32 << 20  # bytes: glibc's largest on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**31 - 1  # bytes (an int): the heap's free top is never given back

_done = False


def tune_malloc() -> bool:
    """Apply the settings above to this process (and the workers it forks) once; True
    when glibc took them, False where they do not apply (not Linux / glibc, or
    ``IMCSIM_MALLOC=default``)."""
    global _done
    if _done:
        return True
    if os.environ.get("IMCSIM_MALLOC", "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def trim_malloc() -> bool:
    """Hand the heap's free pages back to the kernel now (glibc's malloc_trim); True when
    glibc did it, False where there is no glibc. Used by ``convert`` / ``reprogram`` when
    they finish and by the benchmarks between measurements."""
    trim = _libc_function("malloc_trim", [ctypes.c_size_t])
    if trim is None:
        return False
    trim(0)
    return True


RELEASE_MIN_BYTES = 16 << 20  # bytes: the least a caller's temporaries make worth a trim (see release_freed)


def release_freed(nbytes: int) -> bool:
    """Hand freed heap pages back (:func:`trim_malloc`) after work whose temporaries came to
    ``nbytes`` bytes, where that is at least :data:`RELEASE_MIN_BYTES` and this process
    does not have the settings of :func:`tune_malloc` (whose point is keeping them); True
    when it trimmed. Once glibc's adaptive mmap threshold has risen, temporaries of a few
    MiB come from the heap, a smaller one is carved from the hole a larger one left, and a
    live block above them keeps the freed pages resident: at VGG9 size tens of MB on top of
    what a forward pass or a programming holds (docs/architecture.md, "Process settings").
    The trim itself takes about 0.02 ms, but the pages it hands back are faulted in and
    zeroed again by the next allocations, so below that size it costs more than it saves."""
    return False if _done or nbytes < RELEASE_MIN_BYTES else trim_malloc()


def _libc_function(name: str, argtypes: list):
    """glibc's function ``name`` (int result) via ctypes, or None (not Linux, musl and other
    C libraries)."""
    libc = _libc()
    fn = getattr(libc, name, None) if libc is not None else None
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


@functools.lru_cache(maxsize=1)
def _libc():
    """The C library, looked up once: ``ctypes.util.find_library`` runs ``ldconfig -p`` in
    a child process (0.9 ms, 50x the trim itself), which a trim every 16 MiB of work
    must not pay; None where it cannot be loaded (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
