"""Studies on engines: the same results whatever runs them, retries when a worker dies,
finished tasks kept when a task fails, and resume runs only what is missing."""

import json
import signal
import subprocess
import sys
import time

import pytest

from imcsim.app.engines import ProcessEngine, SerialEngine, make_engine
from imcsim.app.study import Study, StudyError, Task, run_study

try:
    import ray
except ImportError:  # pragma: no cover - CI installs it
    ray = None


def _study(tmp_path, n=6, die_at=None, fail_at=(), sleep=0.0, name="selftest"):
    ctx = {"uid": name, "log": str(tmp_path / "log")}
    tasks = [Task(f"t{i}", "selftest", {"value": i, "sleep": sleep,
                                        "die_marker": str(tmp_path / "die") if i == die_at else None,
                                        "fail_marker": str(tmp_path / "fail") if i in fail_at else None})
             for i in range(n)]
    return Study(name, ctx, tasks)


def _ran(tmp_path):
    return [int(float(v)) for v in (tmp_path / "log").read_text().split()] if (tmp_path / "log").exists() else []


def test_same_results_in_task_order_on_every_local_engine(tmp_path):
    want = {f"t{i}": {"value": 2 * i} for i in range(6)}
    for engine in (SerialEngine(threads=1), ProcessEngine(2, threads=1)):
        got = run_study(_study(tmp_path, sleep=0.05), engine)
        assert got == want and list(got) == list(want)


def test_costliest_tasks_start_first_and_results_keep_task_order(tmp_path):
    costs = [0.1, 1.0, 0.25, 1.0, 0.4, 1.0]
    tasks = [Task(f"t{i}", "selftest", {"value": i}, cost=c) for i, c in enumerate(costs)]
    study = Study("costs", {"uid": "costs", "log": str(tmp_path / "log")}, tasks)
    got = run_study(study, SerialEngine(threads=1))
    assert _ran(tmp_path) == [1, 3, 5, 4, 2, 0]  # longest first; ties in the study's order
    assert list(got) == [f"t{i}" for i in range(6)] and got["t4"] == {"value": 8}
    # the hint is not part of a task's identity: a journal resumes across different hints
    assert Study("costs", study.context, [Task(t.key, t.fn, t.params) for t in tasks]).fingerprint() == study.fingerprint()


def test_a_killed_worker_is_retried_and_the_study_completes(tmp_path):
    got = run_study(_study(tmp_path, die_at=3), ProcessEngine(2, threads=1, retries=2))
    assert got == {f"t{i}": {"value": 2 * i} for i in range(6)}
    assert (tmp_path / "die").exists()  # the worker running t3 did die once
    assert sorted(set(_ran(tmp_path))) == list(range(6))


@pytest.mark.parametrize("engine", ["serial", "processes"])
def test_failed_tasks_keep_the_finished_ones_and_resume_runs_only_the_rest(tmp_path, engine):
    journal = tmp_path / "journal.jsonl"
    (tmp_path / "fail").write_text("")
    eng = make_engine(engine, 2 if engine == "processes" else 1, threads=1, retries=1)
    with pytest.raises(StudyError, match=r"2 of 6 tasks failed after retries \(4 finished and kept"):
        run_study(_study(tmp_path, fail_at=(1, 4)), eng, journal=journal)
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert sorted(x["key"] for x in lines) == ["t0", "t2", "t3", "t5"]
    before = len(_ran(tmp_path))
    (tmp_path / "fail").unlink()
    stats = {}
    got = run_study(_study(tmp_path, fail_at=(1, 4)), eng, journal=journal, resume=True, stats=stats)
    assert got == {f"t{i}": {"value": 2 * i} for i in range(6)}
    assert sorted(_ran(tmp_path)[before:]) == [1, 4]  # only the missing tasks ran again
    assert stats == {"tasks": 6, "resumed": 4}
    # a different study (other tasks) does not take this journal's results
    other = _study(tmp_path, n=3, name="another")
    run_study(other, eng, journal=journal, resume=True, stats=stats)
    assert stats["resumed"] == 4


def test_journal_survives_a_line_cut_short(tmp_path):
    journal = tmp_path / "j.jsonl"
    run_study(_study(tmp_path, n=3), SerialEngine(threads=1), journal=journal)
    with open(journal, "a") as f:
        f.write('{"study": "x", "key": "t')  # a crash in the middle of a write
    stats = {}
    run_study(_study(tmp_path, n=3), SerialEngine(threads=1), journal=journal, resume=True, stats=stats)
    assert stats["resumed"] == 3


@pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'imcsim[ray]')")
def test_ray_engine_gives_the_same_results_and_survives_a_killed_worker(tmp_path):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        got = run_study(_study(tmp_path, die_at=2), make_engine("ray", threads=1, retries=2))
    finally:
        ray.shutdown()
    assert got == {f"t{i}": {"value": 2 * i} for i in range(6)} and (tmp_path / "die").exists()


# ------------------------------------------------------------------------------ through the CLI


def _cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "imcsim", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("eng")
    r = _cli("train", "--dataset", "digits", "--train-limit", "300", "--test-limit", "150", "--holdout", "60",
             "--epochs", "2", "--quiet", "--timesteps", "3", "--out", d / "snn")
    assert r.returncode == 0, r.stderr
    return d / "snn" / "model.pt"


EVAL = ["--chips", "3", "--sweep", "device.variation=0,0.1", "--quiet"]


def test_evaluate_results_are_byte_identical_on_every_engine(ckpt, tmp_path):
    outs = {}
    engines = [("serial", []), ("workers2", ["--workers", "2"])]
    if ray is not None:
        engines.append(("ray", ["--engine", "ray", "--workers", "2"]))
    for name, flags in engines:
        r = _cli("evaluate", "--checkpoint", ckpt, *EVAL, *flags, "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
        outs[name] = (tmp_path / name / "evaluate.json").read_bytes()
        run = json.loads((tmp_path / name / "run.json").read_text())
        assert run["engine"] == {"serial": "serial", "workers2": "processes", "ray": "ray"}[name]
    first = outs["serial"]
    assert all(v == first for v in outs.values()), list(outs)


def test_evaluate_on_data_slices_adds_up_to_the_same_bytes(ckpt, tmp_path):
    # every row's 150 test samples in 4 tasks of 37-38 samples, on 2 workers
    r = _cli("evaluate", "--checkpoint", ckpt, *EVAL, "--slices", "4", "--workers", "2", "--out", tmp_path / "sliced")
    assert r.returncode == 0, r.stderr
    whole = _cli("evaluate", "--checkpoint", ckpt, *EVAL, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert (tmp_path / "sliced" / "evaluate.json").read_bytes() == (tmp_path / "whole" / "evaluate.json").read_bytes()
    run = json.loads((tmp_path / "sliced" / "run.json").read_text())
    assert run["slices"] == 4 and run["tasks"] == 4 * (3 + 3 + 2 * 3)


def test_slices_of_time_major_inputs_add_up_to_the_same_bytes(tmp_path):
    # event data are (T, B, ...): a slice must cut the sample dimension, not time
    r = _cli("train", "--dataset", "event-digits", "--train-limit", "200", "--test-limit", "60", "--holdout", "40",
             "--epochs", "1", "--quiet", "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    outs = []
    for k in (1, 3):
        r = _cli("evaluate", "--checkpoint", tmp_path / "ev" / "model.pt", "--chips", "1", "--slices", str(k),
                 "--quiet", "--out", tmp_path / f"s{k}")
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / f"s{k}" / "evaluate.json").read_bytes())
    assert outs[0] == outs[1]
    assert json.loads(outs[0])["test_samples"] == 60


def test_more_slices_than_test_samples_is_refused_before_any_work(ckpt, tmp_path):
    r = _cli("evaluate", "--checkpoint", ckpt, "--test-limit", "10", "--slices", "11", "--quiet",
             "--out", tmp_path / "ev")
    assert r.returncode == 2 and "--slices must be between 1 and the 10 test samples, got 11" in r.stderr, r.stderr
    assert not (tmp_path / "ev").exists()


def test_interrupted_evaluate_resumes_from_its_journal(ckpt, tmp_path):
    out = tmp_path / "ev"
    journal = tmp_path / ".ev.journal.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "imcsim", "evaluate", "--checkpoint", str(ckpt), *EVAL,
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 300 and (not journal.exists() or len(journal.read_text().splitlines()) < 2):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "--resume" in err, err
    assert not out.exists()
    done = len(journal.read_text().splitlines())
    assert done >= 2
    r = _cli("evaluate", "--checkpoint", ckpt, *EVAL, "--resume", "--out", out)
    assert r.returncode == 0, r.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["tasks_from_journal"] >= 2 and run["tasks"] == 3 + 3 + 2 * 3
    assert not journal.exists()  # removed once the folder is in place
    fresh = _cli("evaluate", "--checkpoint", ckpt, *EVAL, "--out", tmp_path / "fresh")
    assert fresh.returncode == 0
    assert (out / "evaluate.json").read_bytes() == (tmp_path / "fresh" / "evaluate.json").read_bytes()


@pytest.mark.filterwarnings("ignore::imcsim.errors.CalibrationWarning")  # an untrained net's quiet last layer
def test_accuracy_tasks_count_no_events_and_priced_tasks_still_do():
    """An accuracy task reads without counting events (nothing prices them); a priced task on
    the same kept chip instance counts its own run from zero, as on a fresh instance."""
    import torch

    from imcsim.app import tasks
    from imcsim.app.experiments import make_context
    from imcsim.events import collect_events
    from imcsim.hardware import HardwareConfig
    from imcsim.models import convnet

    torch.manual_seed(0)
    net = convnet(in_shape=(1, 8, 8), channels=(4, 8), hidden=16, kind="snn", timesteps=2).eval()
    with torch.no_grad():  # strong BatchNorm gains: every layer spikes
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.weight.data.uniform_(1.5, 2.5)
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 10, (12,))
    hw = HardwareConfig.preset("rram").to_dict()
    from imcsim.cost import Technology

    tasks.set_context(make_context({"m": net}, x_cal=x[:4], x_test=x, y_test=y, batch_size=5,
                                   tech=Technology.preset("spikesim-65nm-rram")))
    try:
        res = tasks.accuracy("m", hw, chip_seed=3)
        kept = tasks.chip("m", hw, 3)
        assert all(v == 0 for e in collect_events(kept).values() for v in e.values())
        priced = tasks.measured_cost("m", hw, chip_seed=3)
        tasks._CHIPS.clear()  # a fresh instance of the same chip
        fresh = tasks.measured_cost("m", hw, chip_seed=3)
        assert priced == fresh and priced["accuracy"] == res["accuracy"]
        assert priced["report"]["energy_J"] > 0
    finally:
        tasks._CHIPS.clear()
        tasks.set_context(None)


def test_quiet_stderr_hides_what_the_block_writes_unless_it_raises(capfd):
    """A stopped Ray run shuts its local instance down inside _quiet_stderr: what Ray's C++
    core writes to file descriptor 2 meanwhile is dropped, unless the shutdown itself fails."""
    import os

    from imcsim.app.engines import _quiet_stderr

    with _quiet_stderr():
        os.write(2, b"task_manager.cc: Failed to push error to driver\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    with pytest.raises(RuntimeError, match="shutdown failed"):
        with _quiet_stderr():
            os.write(2, b"what went wrong\n")
            raise RuntimeError("shutdown failed")
    assert capfd.readouterr().err == "what went wrong\n"
