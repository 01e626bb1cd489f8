"""The command line's malloc settings (imcsim.allocator): in a fresh process, a 16 MiB
block comes from the heap once they are set, and from its own mmap'd pages (glibc's default)
with IMCSIM_MALLOC=default."""

import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
from imcsim.allocator import tune_malloc
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = tune_malloc()
before = libc.mallinfo2().hblkhd
p = libc.malloc(16 << 20)
mapped = libc.mallinfo2().hblkhd - before
libc.free(p)
print(int(applied), int(mapped >= 16 << 20))
"""


def _probe(env_value):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("IMCSIM_MALLOC", None)
    if env_value is not None:
        env["IMCSIM_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(int(v) for v in out.stdout.split())


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"),
                    reason="the settings are glibc malloc's")
def test_tuned_malloc_keeps_large_blocks_in_the_heap():
    assert _probe(None) == (1, 0)  # applied; the block is not mmap'd
    assert _probe("default") == (0, 1)  # glibc's defaults: mmap'd (the control: the probe can see it)


TRIM_PROBE = r"""
import ctypes
from imcsim.allocator import trim_malloc, tune_malloc
tune_malloc()  # the heap's free top is never given back on its own now
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(1 << 20) for _ in range(64)]  # 64 MiB in the heap (below the mmap threshold)
for b in blocks:
    ctypes.memset(b, 1, 1 << 20)
for b in blocks:
    libc.free(b)
kept = rss()
done = trim_malloc()
print(int(done), kept - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"),
                    reason="malloc_trim is glibc's")
def test_trim_malloc_hands_freed_heap_pages_back():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "IMCSIM_MALLOC"}
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    done, released_kib = (int(v) for v in out.stdout.split())
    assert done == 1 and released_kib > 48 * 1024  # most of the 64 MiB freed blocks left the resident set


def test_convert_and_reprogram_hand_their_freed_memory_back(monkeypatch):
    """convert and reprogram end by trimming the heap, after calibration (programming's
    float64 pieces and the calibration's reads are freed by then)."""
    import torch
    import torch.nn as nn

    import imcsim
    from imcsim.convert import core

    log = []
    monkeypatch.setattr(core, "trim_malloc", lambda: log.append("trim") or True)
    calibrate = core.calibrate
    monkeypatch.setattr(core, "calibrate", lambda *a, **k: log.append("calibrate") or calibrate(*a, **k))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.rand(8, 12)
    chip = imcsim.convert(net, imcsim.HardwareConfig.preset("rram").replace(rows=8, cols=8), calibration=x)
    assert log == ["calibrate", "trim"]
    imcsim.reprogram(chip, 5, calibration=x)
    assert log == ["calibrate", "trim"] * 2


def test_release_freed_trims_after_large_work_unless_the_settings_keep_freed_memory(monkeypatch):
    from imcsim import allocator

    log = []
    monkeypatch.setattr(allocator, "trim_malloc", lambda: log.append("trim") or True)
    monkeypatch.setattr(allocator, "_done", False)  # glibc's own settings (a library user's process)
    big = allocator.RELEASE_MIN_BYTES
    assert allocator.release_freed(big - 1) is False and log == []  # a trim would cost more than it saves
    assert allocator.release_freed(big) is True and log == ["trim"]
    monkeypatch.setattr(allocator, "_done", True)  # tune_malloc applied: freed blocks are kept for reuse
    assert allocator.release_freed(10 * big) is False and log == ["trim"]


def test_crossbar_layers_release_their_temporaries(monkeypatch):
    """Each layer's programming and each crossbar layer's read of a batch end by offering
    the freed heap back (imcsim.allocator.release_freed), with the bytes their temporaries
    scale with: the layer's float64 cells, the read's outputs."""
    import torch
    import torch.nn as nn

    from imcsim import HardwareConfig, crossbar
    from imcsim.crossbar import CrossbarConv, CrossbarLinear, InputSpec

    log = []
    monkeypatch.setattr(crossbar, "release_freed", lambda n: log.append(n) or False)
    torch.manual_seed(0)
    hw = HardwareConfig.preset("rram").replace(rows=8, cols=8)
    lin = CrossbarLinear(nn.Linear(12, 6), hw, InputSpec("spike"), name="fc")
    conv = CrossbarConv(nn.Conv2d(2, 3, 3, padding=1), hw, InputSpec("spike"), name="conv")
    cells = [8 * lin.tiles.mats.numel(), 8 * conv.tiles.mats.numel()]
    assert log == cells  # one per programmed layer
    for layer, x in ((lin, torch.randint(0, 2, (4, 12)).float()), (conv, torch.randint(0, 2, (2, 2, 5, 5)).float())):
        layer.tiles.adc_full_scale = 8.0
        layer(x)
    assert log == cells + [4 * 6 * 4, 2 * 3 * 25 * 4]  # and one per forward: its float32 outputs


def test_the_c_library_is_looked_up_once(monkeypatch):
    """ctypes.util.find_library runs ``ldconfig -p`` in a child process (about 1 ms, far more
    than a trim): trims every 16 MiB of work must not pay it each time."""
    import ctypes
    import ctypes.util

    from imcsim import allocator

    calls = []
    find = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: calls.append(name) or find(name))
    allocator._libc.cache_clear()
    try:
        for _ in range(5):
            allocator.trim_malloc()
        allocator._libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
        assert len(calls) <= 1  # (0 where there is no C library to find: not Linux)
        if sys.platform.startswith("linux"):
            assert calls == ["c"] and allocator.trim_malloc() is True
    finally:
        allocator._libc.cache_clear()
