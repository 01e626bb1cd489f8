"""Studies that survive their failures: threaded workers that cannot deadlock, workers that
die with the main process, interrupts and kills on every engine, sizes checked before
anything is allocated, broken weights refused, full disks, configuration errors found
before any task runs. Real processes, real signals, real resource limits."""

import copy
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imcsim.app.engines import ProcessEngine, SerialEngine, start_method
from imcsim.app.study import Study, Task, run_study
from imcsim.errors import ConfigError

try:
    import ray
except ImportError:  # pragma: no cover - CI installs it
    ray = None

EV = ["--chips", "4", "--sweep", "device.variation=0,0.1,0.2", "--test-limit", "150", "--quiet"]  # 19 tasks


def _cmd(*args):
    return [sys.executable, "-m", "imcsim", *map(str, args)]


def _cli(*args, timeout=600, limits=None):
    def pre():
        for what, value in (limits or {}).items():
            resource.setrlimit(what, (value, value))

    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          preexec_fn=pre if limits else None)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imcsim: error: "), err
    return lines[0]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    kids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        kids.append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... (forkserver workers are the server's children)."""
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _gone(pids, within=15.0) -> list[int]:
    t0 = time.time()
    while time.time() - t0 < within and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _lines(journal: Path) -> list[dict]:
    return [json.loads(x) for x in journal.read_text().splitlines()] if journal.exists() else []


def _wait_lines(journal: Path, n: int, p: subprocess.Popen, timeout=300.0) -> None:
    t0 = time.time()
    while len(_lines(journal)) < n:
        assert p.poll() is None, p.communicate()[1]
        assert time.time() - t0 < timeout, "the study wrote no journal lines"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("fail")
    r = _cli("train", "--dataset", "digits", "--model", "convnet", "--kind", "snn", "--timesteps", "4", "--epochs", "1",
             "--quiet", "--out", d / "snn")
    assert r.returncode == 0, r.stderr
    return d / "snn" / "model.pt"


@pytest.fixture(scope="module")
def serial(ckpt, tmp_path_factory):
    """evaluate.json of the study run serially: every other run must give these bytes."""
    out = tmp_path_factory.mktemp("ref") / "serial"
    r = _cli("evaluate", "--checkpoint", ckpt, *EV, "--out", out)
    assert r.returncode == 0, r.stderr
    return (out / "evaluate.json").read_bytes()


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and not p.name.endswith(".jsonl"))


# ------------------------------------------------------------------------------ workers


def test_start_method_is_decided_in_one_place(monkeypatch):
    monkeypatch.delenv("IMCSIM_START_METHOD", raising=False)
    assert start_method(1) == "fork" and start_method(2) == "forkserver"  # libgomp does not survive fork
    monkeypatch.setenv("IMCSIM_START_METHOD", "fork")
    with pytest.raises(ConfigError, match="would deadlock"):
        start_method(2)
    monkeypatch.setenv("IMCSIM_START_METHOD", "threads")
    with pytest.raises(ConfigError, match="IMCSIM_START_METHOD must be one of fork, forkserver, spawn, got 'threads'"):
        start_method(1)


def test_threaded_workers_finish_and_give_the_serial_bytes(ckpt, tmp_path):
    # before: every worker hung in gomp_team_barrier_wait_end (OpenMP used after fork)
    small = ["--chips", "2", "--test-limit", "100", "--quiet"]
    r = _cli("evaluate", "--checkpoint", ckpt, *small, "--workers", "2", "--threads", "2", "--out", tmp_path / "t2",
             timeout=400)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "t2" / "run.json").read_text())["threads_per_task"] == 2
    r = _cli("evaluate", "--checkpoint", ckpt, *small, "--out", tmp_path / "serial")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t2" / "evaluate.json").read_bytes() == (tmp_path / "serial" / "evaluate.json").read_bytes()


@pytest.mark.parametrize("sig,flags", [(signal.SIGINT, ["--workers", "2"]), (signal.SIGTERM, ["--workers", "2"]),
                                       (signal.SIGTERM, ["--workers", "2", "--threads", "2"]), (signal.SIGTERM, [])],
                         ids=["sigint-workers", "sigterm-workers", "sigterm-forkserver", "sigterm-serial"])
def test_interrupts_stop_the_workers_and_keep_the_journal(ckpt, tmp_path, sig, flags):
    out, journal = tmp_path / "ev", tmp_path / ".ev.journal.jsonl"
    p = subprocess.Popen(_cmd("evaluate", "--checkpoint", ckpt, *EV, *flags, "--out", out), stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    _wait_lines(journal, 2, p)
    workers = _descendants(p.pid)
    assert workers or not flags
    if sig == signal.SIGINT:
        os.killpg(p.pid, sig)  # Ctrl-C reaches the whole process group, workers included
    else:
        p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    line = _one_line(err)
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in line and "--resume" in line
    assert _gone(workers, within=10) == []
    done = _lines(journal)
    assert len(done) >= 2 and all(rec["key"] for rec in done)
    assert not out.exists() and _leftovers(tmp_path, "ev") == []  # no partial folder, no lock


@pytest.mark.parametrize("threads", ["1", "2"], ids=["fork", "forkserver"])
def test_kill9_of_the_main_process_leaves_no_worker_and_resume_finishes(ckpt, serial, tmp_path, threads):
    out, journal = tmp_path / "km", tmp_path / ".km.journal.jsonl"
    p = subprocess.Popen(_cmd("evaluate", "--checkpoint", ckpt, *EV, "--workers", "2", "--threads", threads, "--out", out),
                         stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_lines(journal, 3, p)
    workers = _descendants(p.pid)
    assert len(workers) >= 2
    p.kill()
    p.wait()
    # before: the orphaned workers ran on and held the output lock ("another imcsim run ...")
    assert _gone(workers, within=10) == []
    r = _cli("evaluate", "--checkpoint", ckpt, *EV, "--workers", "2", "--resume", "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "run.json").read_text())["tasks_from_journal"] >= 3
    assert (out / "evaluate.json").read_bytes() == serial


def test_kill9_of_a_worker_is_retried_and_gives_the_same_bytes(ckpt, serial, tmp_path):
    out, journal = tmp_path / "kw", tmp_path / ".kw.journal.jsonl"
    p = subprocess.Popen(_cmd("evaluate", "--checkpoint", ckpt, *EV, "--workers", "2", "--out", out),
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_lines(journal, 2, p)
    os.kill(_children(p.pid)[0], signal.SIGKILL)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert (out / "evaluate.json").read_bytes() == serial


def _ray_processes(main_pid: int) -> list[int]:
    """Processes with a file open in the Ray session folder of the run whose main process
    was ``main_pid`` (Ray names the folder after it)."""
    found = []
    sessions = [str(s) + "/" for s in Path("/tmp/ray").glob(f"session_*_{main_pid}")]
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                for fd in os.listdir(f"/proc/{p}/fd"):
                    if any(os.readlink(f"/proc/{p}/fd/{fd}").startswith(s) for s in sessions):
                        found.append(int(p))
                        break
            except OSError:
                pass
    return found


@pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'imcsim[ray]')")
@pytest.mark.parametrize("how", ["sigint", "sigterm", "kill9"])
def test_ray_runs_stop_cleanly_and_leave_no_process(ckpt, tmp_path, how):
    out, journal = tmp_path / "ry", tmp_path / ".ry.journal.jsonl"
    p = subprocess.Popen(_cmd("evaluate", "--checkpoint", ckpt, *EV, "--engine", "ray", "--workers", "2", "--out", out),
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_lines(journal, 2, p)
    assert _ray_processes(p.pid)
    if how == "sigint":  # Ctrl-C: the whole process group
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130 and "interrupted" in _one_line(err) and "--resume" in err, err
    elif how == "sigterm":  # before: Ray's own handler aborted the process (SIGABRT) with a C++ stack
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 143 and "terminated" in _one_line(err) and "--resume" in err, err
    else:  # before: ray::DashboardAgent and ray::RuntimeEnvAgent stayed alive
        p.kill()
        p.communicate()
    t0 = time.time()
    while _ray_processes(p.pid) and time.time() - t0 < 30:
        time.sleep(0.2)
    assert _ray_processes(p.pid) == []
    assert len(_lines(journal)) >= 2 and not out.exists()


# ------------------------------------------------------------------------------ what is asked


def test_a_task_that_cannot_run_as_asked_is_a_configuration_error(tmp_path):
    study = Study("broken", {"uid": "broken"}, [Task("t0", "selftest", {"value": 1}), Task("t1", "no_such_task")])
    for engine in (SerialEngine(threads=1), ProcessEngine(2, threads=1)):
        with pytest.raises(ConfigError, match="broken task t1 cannot run as asked: ValueError: unknown task"):
            run_study(study, engine, journal=tmp_path / "j.jsonl")
    assert [rec["key"] for rec in _lines(tmp_path / "j.jsonl")] == ["t0", "t0"]  # the good task is kept


def test_a_chip_too_small_is_refused_before_any_task(ckpt, tmp_path):
    (tmp_path / "hw.toml").write_text('name = "tiny"\n[chip]\nmax_tiles = 1\n')
    for cmd in ("energy", "timesteps"):
        r = _cli(cmd, "--checkpoint", ckpt, "--config", tmp_path / "hw.toml", "--quiet", "--out", tmp_path / cmd)
        # before: "1 of 1 tasks failed after retries ... run again with --resume" (exit 1)
        assert r.returncode == 2, r.stderr
        assert "needs 8 crossbar tiles but the chip has chip.max_tiles = 1" in _one_line(r.stderr)
        assert not (tmp_path / f".{cmd}.journal.jsonl").exists() and not (tmp_path / cmd).exists()


MEMORY = {resource.RLIMIT_AS: 3 << 30}  # a 10 KB file must not get near this


def _mutated(ckpt, tmp_path, where, key, value):
    ck = torch.load(ckpt, weights_only=True)
    ck = copy.deepcopy(ck)
    if where == "state_dict":
        value = value(ck["state_dict"][key])
    ck[where][key] = value
    path = tmp_path / f"{key}.pt"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("where,key,value,message", [
    ("arch", "hidden", 10**9, r"arch.hidden must be in \[1, 1048576\], got 1000000000"),
    ("arch", "channels", [10**6, 10**6], r"arch.channels\[0\] must be in \[1, 65536\], got 1000000"),
    ("arch", "in_shape", [1, 10**5, 10**5], r"arch.in_shape\[1\] must be in \[1, 16384\], got 100000"),
    ("arch", "in_shape", [3, 8000, 8000], r"in_shape = \[3, 8000, 8000\] holds 192,000,000 values per sample"),
    ("arch", "in_shape", [1, 3000, 3000], r"the network would hold [\d,]+ values \([\d.]+ GiB\), more than the memory "
                                          r"budget"),
    ("arch", "timesteps", 10**7, r"arch.timesteps must be in \[1, 64\], got 10000000"),
    ("arch", "hidden", 0, r"arch.hidden must be in \[1, 1048576\], got 0"),
    ("meta", "n_test", "12", r"meta.n_test must be a sample count >= 1 or null, got '12'"),
    ("state_dict", "body.0.weight", lambda t: t * float("nan"), r"tensor 'body.0.weight' holds 144 non-finite"),
    ("state_dict", "body.4.weight", lambda t: t.index_fill(0, torch.tensor([0]), float("inf")),
     r"tensor 'body.4.weight' holds \d+ non-finite"),
    ("state_dict", "body.1.running_var", lambda t: -t - 1, r"tensor 'body.1.running_var' \(a BatchNorm variance\) holds "
                                                          r"negative values"),
], ids=["hidden", "channels", "in_shape", "in_values", "budget", "timesteps", "zero", "n_test", "nan", "inf", "var"])
def test_crafted_checkpoints_are_refused_before_anything_is_built(ckpt, tmp_path, where, key, value, message):
    bad = _mutated(ckpt, tmp_path, where, key, value)
    if key == "in_shape" and value == [1, 3000, 3000]:
        env = {"IMCSIM_MEMORY_BUDGET": str(1 << 30)}  # 2.3e9 values = 9 GB of weights, against a 1 GiB budget
    else:
        env = {}
    r = subprocess.run(_cmd("evaluate", "--checkpoint", bad, "--chips", "1", "--quiet", "--out", tmp_path / "o"),
                       capture_output=True, text=True, timeout=300, env={**os.environ, **env},
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY[resource.RLIMIT_AS],) * 2))
    assert r.returncode == 2, r.stderr  # before: a traceback (512 GB allocated) or a float row of 2-8 %
    import re

    assert re.search(message, _one_line(r.stderr)), r.stderr
    assert not (tmp_path / "o").exists()


def _nir_file(tmp_path, name, weight=None, shape=None, n=10):
    import h5py
    import nir
    import numpy as np

    g = nir.NIRGraph.from_list(nir.Affine(np.ones((n, 392), np.float32), np.zeros(n, np.float32)),
                               nir.LIF(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n),
                                       v_threshold=np.ones(n)))
    path = tmp_path / name
    nir.write(path, g)
    if weight is None and shape is None:
        return path
    with h5py.File(path, "r+") as f:
        key = "node/nodes/affine/weight"
        del f[key]
        if shape is not None:  # declared, chunked, never written: the file stays small
            f.create_dataset(key, shape=shape, dtype="f4", chunks=(1, 1024))
        else:
            f.create_dataset(key, data=weight)
    return path


def test_crafted_nir_files_are_refused_before_their_arrays_are_read(tmp_path):
    import numpy as np

    nan = np.ones((10, 392), np.float32)
    nan[3, 7] = np.nan
    cases = {
        "big.nir": (dict(shape=(10, 10**8)), r"array 'node/nodes/affine/weight' declares shape \(10, 100000000\)"),
        "huge.nir": (dict(shape=(10**5, 10**5)), r"declares shape \(100000, 100000\) \(10,000,000,000 values\)"),
        "nan.nir": (dict(weight=nan), r"tensor 'affine.weight' holds 1 non-finite value"),
        "empty.nir": (dict(n=0), r"NIR node 'affine' \(Affine\): weight must have 2 "
                                                                    r"dimensions, none of size 0"),
    }
    import re

    for name, (kw, message) in cases.items():
        path = _nir_file(tmp_path, name, **kw)
        assert path.stat().st_size < 100_000
        r = _cli("import", path, "--dt", "1e-4", "--out", tmp_path / f"o-{name}", limits=MEMORY, timeout=300)
        assert r.returncode == 2 and re.search(message, _one_line(r.stderr)), (name, r.stderr)
        assert not (tmp_path / f"o-{name}").exists()
    (tmp_path / "fake.nir").write_text("not an HDF5 file")
    r = _cli("import", tmp_path / "fake.nir", "--out", tmp_path / "o-fake")
    assert r.returncode == 2 and "is not a NIR file: NIR files are HDF5 files" in _one_line(r.stderr)


# ------------------------------------------------------------------------------ full disks


@pytest.mark.parametrize("limit", [64, 1024, 6000])
def test_a_file_size_limit_gives_one_line_and_keeps_whole_journal_lines(ckpt, serial, tmp_path, limit):
    """ulimit -f: a write past the limit fails (EFBIG) where a full disk would (ENOSPC): the
    marker, the journal, a PNG or the CSV, depending on the limit."""
    out, journal = tmp_path / "fs", tmp_path / ".fs.journal.jsonl"
    r = _cli("evaluate", "--checkpoint", ckpt, *EV, "--out", out, limits={resource.RLIMIT_FSIZE: limit})
    assert r.returncode == 1, r.stderr
    line = _one_line(r.stderr)
    assert "cannot write '" in line and "bytes to write): the file size limit (ulimit -f) is reached" in line, line
    assert not out.exists() and _leftovers(tmp_path, "fs") == []  # no partial folder, no lock
    for rec in _lines(journal):  # whole lines only
        assert rec["key"]
    r = _cli("evaluate", "--checkpoint", ckpt, *EV, "--resume", "--out", out)
    assert r.returncode == 0, r.stderr
    assert (out / "evaluate.json").read_bytes() == serial


_TMPFS_DRIVER = r"""
import json, os, shutil, subprocess, sys
root, ckpt, kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", root], check=True)
st = os.statvfs(root)
with open(os.path.join(root, "filler"), "wb") as f:
    f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - kb * 1024))
cmd = [sys.executable, "-m", "imcsim", "evaluate", "--checkpoint", ckpt] + sys.argv[4:] + ["--out", root + "/ev"]
full = subprocess.run(cmd, capture_output=True, text=True)
left = sorted(os.listdir(root))
journal = os.path.join(root, ".ev.journal.jsonl")
lines = open(journal).read().splitlines() if os.path.exists(journal) else []
os.unlink(os.path.join(root, "filler"))
again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
data = open(root + "/ev/evaluate.json", "rb").read().decode() if again.returncode == 0 else None
print(json.dumps({"rc": full.returncode, "err": full.stderr, "left": left, "lines": lines,
                  "rc2": again.returncode, "err2": again.stderr, "json": data}))
"""


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="no unprivileged mount namespaces here (unshare -Urm); the file-size "
                                                 "limit test covers the same code paths")
@pytest.mark.parametrize("kb", [0, 8])
def test_a_full_tmpfs_gives_one_line_and_resume_finishes(ckpt, serial, tmp_path, kb):
    root = tmp_path / "disk"
    root.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(_TMPFS_DRIVER)
    r = subprocess.run(["unshare", "-Urm", sys.executable, driver, root, ckpt, str(kb), *EV], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["rc"] == 1 and "no space left on the device" in _one_line(res["err"]), res["err"]
    assert "bytes free on its file system" in res["err"]
    assert [n for n in res["left"] if n not in ("filler", ".ev.journal.jsonl")] == []  # no partial folder
    assert all(json.loads(x)["key"] for x in res["lines"])
    assert res["rc2"] == 0, res["err2"]
    assert res["json"].encode() == serial
