"""Inputs that are already sequences (event-camera frames): every timestep's actual input
events are what the crossbars read and what the cost model charges, from the API to the
command line."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imcsim
from imcsim import HardwareConfig
from imcsim.cost import Technology, estimate
from imcsim.datasets import load_dataset
from imcsim.dynamic import run_dynamic

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test"


def test_each_timesteps_input_events_are_read_and_charged():
    torch.manual_seed(0)
    net = imcsim.mlp(in_shape=(2, 6, 6), hidden=(8,), kind="snn", timesteps=4, input="sequence")
    hw = HardwareConfig.ideal(rows=128, cols=128)  # the 72 inputs on one row tile
    g = torch.Generator().manual_seed(1)
    density = torch.tensor([0.05, 0.4, 0.0, 0.9]).view(4, 1, 1, 1, 1)  # very different frames
    x = (torch.rand(4, 5, 2, 6, 6, generator=g) < density).float()
    chip = imcsim.convert(net, hw, calibration=x)
    imcsim.reset_events(chip)
    with torch.no_grad():
        chip(x)
    first = next(m for m in chip.modules() if isinstance(m, imcsim.CrossbarLinear))
    ev = first.events.counts
    assert ev["vectors"] == 4 * 5  # one input vector per sample and timestep
    assert ev["active_rows"] == x.sum().item()  # every input event drives its row once, frame by frame
    assert ev["tile_reads"] == (x.flatten(2).sum(-1) > 0).sum().item()  # all-zero frames are not read
    rep = estimate(chip, Technology.preset("spikesim-65nm-rram"), timesteps=4)
    address_bits = math.ceil(math.log2(2 * 6 * 6 + 1))  # an event is fetched as its address
    assert rep.layers[0].name == "input" and rep.layers[0].counts["bits"] == pytest.approx(x.sum().item() / 5 * address_bits)


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "imcsim", *map(str, args)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist-test")
def test_event_frames_through_train_evaluate_energy_and_timesteps(tmp_path):
    """A conv SNN on (T, B, 2, 34, 34) event frames (event-mnist) on rram hardware."""
    n = 100
    cli("train", "--dataset", "event-mnist", "--data-dir", SHARED_MNIST, "--model", "convnet", "--channels", "4,8",
        "--hidden", "32", "--epochs", "2", "--lr", "5e-3", "--train-limit", "1000", "--test-limit", str(n),
        "--holdout", "100", "--quiet", "--out", tmp_path / "ck")
    ck = tmp_path / "ck" / "model.pt"
    info = json.loads((tmp_path / "ck" / "train.json").read_text())
    assert info["arch"]["input"] == "sequence" and info["arch"]["timesteps"] == 10
    assert info["test_accuracy"] > 30  # it learned something from the events (chance: 10 %)
    fast = ["--test-limit", n, "--calibration-samples", "32", "--quiet"]
    cli("evaluate", "--checkpoint", ck, "--preset", "rram", "--chips", "1", *fast, "--out", tmp_path / "ev")
    acc = json.loads((tmp_path / "ev" / "evaluate.json").read_text())["accuracy"]
    assert {r["hardware"] for r in acc} >= {"float (digital)", "rram"}
    cli("energy", "--checkpoint", ck, "--preset", "rram", *fast, "--out", tmp_path / "en")
    rep = json.loads((tmp_path / "en" / "energy.json").read_text())["report"]
    # hand count: the events of the 100 test sequences, each fetched as a 12-bit address
    # (2 x 34 x 34 = 2312 pixels) and read by the 3x3 first conv once per kernel position
    x = load_dataset("event-mnist", SHARED_MNIST).x_test[:, :n]
    events = x.sum().item() / n
    inp, conv = rep["layers"][0], rep["layers"][1]
    assert inp["name"] == "input" and inp["counts"]["bits"] == pytest.approx(events * 12, rel=1e-6)
    assert conv["counts"]["input_bits"] == 10 * 34 * 34 * 2 * 9  # spikes: one bit per input, all positions
    assert conv["counts"]["active_rows"] == pytest.approx(events * 9, rel=1e-6)  # no event on the zero border
    cli("timesteps", "--checkpoint", ck, "--preset", "rram", "--thetas", "0.05,0.3", *fast, "--out", tmp_path / "ts")
    ts = json.loads((tmp_path / "ts" / "timesteps.json").read_text())
    static = [r for r in ts["rows"] if r["mode"] == "static"]
    dyn = [r for r in ts["rows"] if r["mode"] == "dynamic"]
    assert [r["T_max"] for r in static] == list(range(1, 11))  # every prefix of the 10 frames
    assert {0.05, 0.3} <= {r["theta"] for r in dyn} and all(1 <= r["avg_timesteps"] <= 10 for r in dyn)
    # fewer frames read, fewer events charged: energy grows with the static T
    assert all(a["energy_J"] < b["energy_J"] for a, b in zip(static, static[1:])), [r["energy_J"] for r in static]


def test_step_by_step_runs_count_each_sample_once():
    """run_dynamic feeds a sequence frame by frame: the samples are counted once, the events
    of every frame read, so the energy per inference grows with the frames run."""
    torch.manual_seed(0)
    zoo = imcsim.mlp(in_shape=(2, 6, 6), hidden=(8,), kind="snn", timesteps=4, input="sequence")
    user = imcsim.Stepwise(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(72, 8), imcsim.IF(),
                                               torch.nn.Linear(8, 10)))
    x = (torch.rand(4, 6, 2, 6, 6, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    tech = Technology.preset("spikesim-65nm-rram")
    for net in (zoo, user):
        chip = imcsim.convert(net, HardwareConfig.ideal(rows=128, cols=128), calibration=x)
        energies = []
        for t_max in (1, 2, 4):
            imcsim.reset_events(chip)
            run = run_dynamic(chip, x, 0.0, t_max)
            counts = chip.input_events.counts
            assert counts["samples"] == 6 and counts["nonzero"] == x[:t_max].sum().item()
            assert run.avg_timesteps == t_max
            energies.append(estimate(chip, tech, timesteps=t_max).energy_J)
        assert energies[0] < energies[1] < energies[2], energies
