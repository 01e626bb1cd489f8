"""The imcsim command: every subcommand on tiny settings, error handling, reproducibility, Ctrl-C."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test"


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "imcsim", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def ok(*args):
    r = run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


TINY = ["--dataset", "digits", "--train-limit", "400", "--test-limit", "120", "--holdout", "80", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    ok("train", *TINY, "--kind", "snn", "--timesteps", "3", "--out", d / "snn")
    ok("train", *TINY, "--kind", "qnn", "--timesteps", "3", "--out", d / "qnn")
    return d


def test_train_writes_checkpoint_and_reports(runs):
    files = {p.name for p in (runs / "snn").iterdir()}
    assert {"model.pt", "history.csv", "train.json", "report.md"} <= files
    info = json.loads((runs / "snn" / "train.json").read_text())
    assert info["arch"]["kind"] == "snn" and info["arch"]["timesteps"] == 3 and len(info["history"]) == 2
    q = json.loads((runs / "qnn" / "train.json").read_text())
    assert q["arch"]["bits"] == 2  # ceil(log2(3 + 1))


def test_training_round_trip_is_bit_for_bit(runs, tmp_path):
    ok("train", *TINY, "--kind", "snn", "--timesteps", "3", "--out", tmp_path / "again")
    a = torch.load(runs / "snn" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "again" / "model.pt", weights_only=False)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["meta"]["test_accuracy"] == b["meta"]["test_accuracy"]
    # evaluating the checkpoint reproduces the accuracy recorded at training time exactly
    ok("evaluate", "--checkpoint", runs / "snn" / "model.pt", "--preset", "ideal", "--chips", "1", "--quiet",
       "--out", tmp_path / "ev")
    acc = json.loads((tmp_path / "ev" / "evaluate.json").read_text())["accuracy"]
    assert acc[0]["hardware"] == "float (digital)" and acc[0]["mean"] == a["meta"]["test_accuracy"]


def test_evaluate_sweep(runs, tmp_path):
    r = ok("evaluate", "--checkpoint", runs / "snn" / "model.pt", "--sweep", "adc.bits=2,6", "--chips", "2",
           "--test-limit", "60", "--quiet", "--out", tmp_path / "ev")
    res = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    assert [row["value"] for row in res["sweep"]["rows"]] == [2, 6]
    assert all(len(row["chips"]) == 2 for row in res["sweep"]["rows"])
    assert (tmp_path / "ev" / "sweep.png").stat().st_size > 1000
    assert "accuracy %" in r.stdout


def test_energy_measured_and_analytical(runs, tmp_path):
    ok("energy", "--checkpoint", runs / "snn" / "model.pt", "--test-limit", "50", "--quiet", "--out", tmp_path / "m")
    m = json.loads((tmp_path / "m" / "energy.json").read_text())["report"]
    assert m["energy_J"] > 0 and m["latency_s"] > 0 and m["edp_Js"] == pytest.approx(m["energy_J"] * m["latency_s"])
    ok("energy", "--checkpoint", runs / "snn" / "model.pt", "--analytical", "--spike-rate", "0.2", "--tech", "puma-32nm",
       "--out", tmp_path / "a", "--quiet")
    a = json.loads((tmp_path / "a" / "energy.json").read_text())["report"]
    assert a["source"] == "analytical" and a["technology"] == "puma-32nm"
    assert (tmp_path / "m" / "breakdown.png").exists() and (tmp_path / "m" / "breakdown.csv").exists()


def test_timesteps(runs, tmp_path):
    r = ok("timesteps", "--checkpoint", runs / "snn" / "model.pt", "--preset", "ideal", "--thetas", "0.3,0.7",
           "--test-limit", "60", "--quiet", "--out", tmp_path / "t")
    res = json.loads((tmp_path / "t" / "timesteps.json").read_text())
    modes = [(row["mode"], row["T_max"]) for row in res["rows"]]
    assert modes[:3] == [("static", 1), ("static", 2), ("static", 3)]
    assert any(m == "dynamic" for m, _ in modes)
    assert (tmp_path / "t" / "pareto.png").exists() and "EDP saving" in r.stdout


def test_compare(runs, tmp_path):
    r = ok("compare", "--snn", runs / "snn" / "model.pt", "--qnn", runs / "qnn" / "model.pt", "--test-limit", "60",
           "--quiet", "--out", tmp_path / "c")
    res = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert res["comparison"]["energy_ratio"] > 0 and "break-even" in r.stdout


def test_demo(tmp_path):
    t0 = time.time()
    r = ok("demo", "--quiet", "--chips", "1", "--out", tmp_path / "demo")
    report = (tmp_path / "demo" / "report.md").read_text()
    for section in ("Accuracy under non-idealities", "Energy, latency, EDP", "Static vs dynamic timesteps", "SNN vs QNN"):
        assert section in report
    assert "done in" in r.stdout and time.time() - t0 < 180


@pytest.mark.parametrize(
    "args, match",
    [
        (["train", "--epochs", "0", "--out", "X"], "--epochs must be >= 1, got 0"),
        (["train", "--kind", "cnn", "--out", "X"], "invalid choice: 'cnn'"),
        (["evaluate", "--checkpoint", "CK", "--config", "nope.toml", "--out", "X"], "hardware config file not found: 'nope.toml'"),
        (["evaluate", "--checkpoint", "CK", "--config", "BAD", "--out", "X"], "is not valid TOML"),
        (["train", "--dataset", "mnist", "--data-dir", "/no/such/dir", "--out", "X"], "data directory not found: '/no/such/dir'"),
        (["train", "--dataset", "mnist", "--data-dir", "EMPTY", "--out", "X"], "no mnist IDX files in"),
        (["evaluate", "--checkpoint", "missing.pt", "--out", "X"], "checkpoint not found: 'missing.pt'"),
        (["evaluate", "--checkpoint", "CK", "--sweep", "adc.bitz=1,2", "--out", "X"], "--sweep: unknown field 'adc.bitz'"),
        (["energy", "--checkpoint", "CK", "--preset", "rram7", "--out", "X"], "unknown hardware preset 'rram7'"),
        (["energy", "--checkpoint", "CK", "--tech", "nope", "--out", "X"], "unknown technology preset 'nope'"),
        (["timesteps", "--checkpoint", "QCK", "--preset", "ideal", "--out", "X"], "timesteps needs an SNN checkpoint"),
        (["train", "--out", "EXISTS"], "already exists; use --force to replace it"),
    ],
)
def test_bad_input_exits_2_with_one_line(runs, tmp_path, args, match):
    (tmp_path / "bad.toml").write_text("[crossbar\nrows = 4\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "exists").mkdir()
    sub = {"CK": runs / "snn" / "model.pt", "QCK": runs / "qnn" / "model.pt", "BAD": tmp_path / "bad.toml",
           "EMPTY": tmp_path / "empty", "X": tmp_path / "out", "EXISTS": tmp_path / "exists"}
    r = subprocess.run([sys.executable, "-m", "imcsim", *[str(sub.get(a, a)) for a in args], "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_leaves_no_partial_results(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "imcsim", "demo", "--quiet", "--out", str(tmp_path / "demo")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # well inside training
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted; no results were written" in err
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a partial one


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist-test")
def test_train_on_real_mnist_files(tmp_path):
    ok("train", "--dataset", "mnist", "--data-dir", SHARED_MNIST, "--train-limit", "300", "--test-limit", "100",
       "--epochs", "1", "--quiet", "--out", tmp_path / "m")
    info = json.loads((tmp_path / "m" / "train.json").read_text())
    assert "first 8000 images train, last 2000 evaluate" in info["split"]
