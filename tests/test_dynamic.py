"""Dynamic timesteps: the exit rule on hand-built logits, and the runner against it."""

import math

import pytest
import torch

import imcsim
from imcsim.dynamic import choose_threshold, exit_decisions, run_dynamic
from imcsim.training import predict_logits


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float64)


def _H(p):
    p = torch.tensor(p, dtype=torch.float64)
    return float(-(p * p.log()).sum() / math.log(len(p)))


def test_entropy_exit_step_by_hand_k2():
    # sample 0: step 1 logits (2, 0): p = (0.881, 0.119), H = 0.527 -> exits at 1 for theta 0.6
    # sample 1: step 1 (0.2, 0): H ~ 0.993; step 2 sum (2.2, 0): H ~ 0.469 -> exits at 2
    L = _logits([[[2.0, 0.0], [0.2, 0.0]], [[0.0, 0.0], [2.0, 0.0]], [[0.0, 5.0], [0.0, 0.0]]])
    steps, pred = exit_decisions(L, 0.6)
    assert steps.tolist() == [1, 2] and pred.tolist() == [0, 0]
    p1 = torch.softmax(torch.tensor([2.0, 0.0], dtype=torch.float64), 0)
    assert _H(p1.tolist()) == pytest.approx(0.5269, abs=1e-3)
    # theta just below sample 0's entropy: it waits; at step 3 its sum (2, 5) is confident in class 1
    h0 = _H(p1.tolist())
    steps, pred = exit_decisions(L, h0 - 1e-9)
    assert steps[0] == 3 and pred[0] == 1


def test_exit_k10_and_mean_variant():
    T, K = 4, 10
    L = torch.zeros(T, 3, K, dtype=torch.float64)
    L[:, 0, 3] = 10.0  # very confident from step 1
    L[2:, 1, 7] = 4.0  # confident only from step 3 (H = 0.31 there)
    # sample 2: uniform all along -> H = 1 -> never below theta < 1 -> T_max
    steps, pred = exit_decisions(L, 0.5)
    assert steps.tolist() == [1, 3, 4] and pred[:2].tolist() == [3, 7]
    # the mean variant divides the sum by t: less confident than the sum from step 2 on
    cum = L.cumsum(0)
    for t in range(T):
        for b in range(3):
            p_sum = torch.softmax(cum[t, b], -1)
            p_mean = torch.softmax(cum[t, b] / (t + 1), -1)
            assert _H(p_mean.tolist()) >= _H(p_sum.tolist()) - 1e-12
    s_mean, _ = exit_decisions(L, 0.5, "entropy_mean")
    assert bool((s_mean >= steps).all())


def test_max_confidence_rule():
    L = _logits([[[1.0, 0.0, 0.0]], [[3.0, 0.0, 0.0]]])  # p_max(1) = 0.576 ; p_max(sum 4) = 0.964
    assert exit_decisions(L, 0.5, "max_confidence")[0].tolist() == [1]
    assert exit_decisions(L, 0.1, "max_confidence")[0].tolist() == [2]
    assert exit_decisions(L, 0.03, "max_confidence")[0].tolist() == [2]  # forced at T_max


def test_theta_extremes_and_ties():
    g = torch.Generator().manual_seed(0)
    L = torch.randn(5, 50, 10, generator=g, dtype=torch.float64)
    assert exit_decisions(L, 0.0)[0].eq(5).all()  # never early
    assert exit_decisions(L, 1.0)[0].eq(1).all()  # at once (no output is exactly uniform)
    uniform = torch.zeros(3, 2, 4, dtype=torch.float64)
    assert exit_decisions(uniform, 1.0)[0].eq(3).all()  # H = 1 is not < 1: ties do not exit
    # a tie in the prediction: the first class wins (argmax)
    assert exit_decisions(uniform, 1.0)[1].eq(0).all()
    # entropy exactly equal to theta does not exit (strict)
    two = _logits([[[math.log(3.0), 0.0]], [[0.0, 0.0]]])  # p = (0.75, 0.25)
    h = _H([0.75, 0.25])
    assert exit_decisions(two, h)[0].tolist() == [2]
    assert exit_decisions(two, h + 1e-12)[0].tolist() == [1]


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(2, 3, 4), -0.1), r"theta must be a number in \[0, 1\], got -0.1"),
        ((torch.zeros(2, 3, 4), 1.5), r"theta must be a number in \[0, 1\], got 1.5"),
        ((torch.zeros(3, 4), 0.5), r"logits must be a \(T, B, K\) tensor, got \(3, 4\)"),
        ((torch.zeros(0, 3, 4), 0.5), r"T >= 1 timesteps and K >= 2 classes"),
        ((torch.zeros(2, 3, 1), 0.5), r"T >= 1 timesteps and K >= 2 classes"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        exit_decisions(*args)
    with pytest.raises(ValueError, match="exit rule must be one of"):
        exit_decisions(torch.zeros(2, 3, 4), 0.5, "margin")


def _small_snn(T=4):
    torch.manual_seed(0)
    net = imcsim.mlp(in_shape=(1, 8, 8), hidden=(32,), kind="snn", timesteps=T).eval()
    return net


def test_runner_agrees_with_the_pure_rule_and_drops_samples():
    net = _small_snn()
    x = torch.rand(70, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    logits = predict_logits(net, x, timesteps=4)
    for theta in (0.0, 0.3, 0.7, 1.0):
        steps, pred = exit_decisions(logits, theta)
        run = run_dynamic(net, x, theta, 4, batch_size=32)
        assert torch.equal(run.exit_steps, steps) and torch.equal(run.predictions, pred)
    # event counts follow the samples still running
    xnet = imcsim.convert(net, imcsim.HardwareConfig.ideal(), calibration=x)
    imcsim.reset_events(xnet)
    run = run_dynamic(xnet, x, 0.5, 4)
    ev = imcsim.collect_events(xnet)
    hidden = [k for k in ev if "updates" in ev[k]][0]
    assert ev[hidden]["updates"] == pytest.approx(float(run.exit_steps.sum()) * 32)
    assert run.histogram()[1] + run.histogram()[2] + run.histogram()[3] + run.histogram()[4] == 70


def test_runner_errors():
    net = _small_snn()
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"T_max must be an integer >= 1, got 0"):
        run_dynamic(net, x, 0.5, 0)
    with pytest.raises(ValueError, match=r"theta must be a number in \[0, 1\]"):
        run_dynamic(net, x, 2.0, 4)
    qnn = imcsim.mlp(in_shape=(1, 8, 8), hidden=(8,), kind="qnn", timesteps=4)
    with pytest.raises(ValueError, match="need an SNN"):
        run_dynamic(qnn, x, 0.5, 4)


def test_choose_threshold_keeps_accuracy_on_calibration_logits():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 10, (400,), generator=g)
    L = torch.randn(4, 400, 10, generator=g, dtype=torch.float64)
    L[:, torch.arange(400), y] += 1.5  # informative, noisy outputs
    res = choose_threshold(L, y, tolerance_pp=0.1)
    steps, pred = exit_decisions(L, res["theta"])
    acc = 100.0 * float((pred == y).float().mean())
    assert acc >= res["static_accuracy"] - 0.1 - 1e-9 and acc == pytest.approx(res["accuracy"])
    assert res["avg_timesteps"] == pytest.approx(float(steps.double().mean()))
    # thetas are exact multiples of 1/400 (0.4 is 0.4, not 0.40000000596: the same theta as a swept 0.4)
    assert res["theta"] * 400 == round(res["theta"] * 400) and res["theta"] == round(res["theta"] * 400) / 400
    # a slightly larger theta (if any) breaks the target
    bigger = [k / 400 for k in range(401) if k / 400 > res["theta"]]
    if bigger:
        _, p2 = exit_decisions(L, bigger[0])
        assert 100.0 * float((p2 == y).float().mean()) < res["static_accuracy"] - 0.1 or res["theta"] == 1.0


def test_static_input_once_one_rule_for_stepwise_and_whole_runs():
    """With static_input_once the input layer is read once per inference whether the network
    runs all T steps at once (predict_logits) or step by step (run_dynamic, theta = 0)."""
    net = _small_snn()
    net.static_input_once = True
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    xnet = imcsim.convert(net, imcsim.HardwareConfig.preset("rram"), calibration=x)
    first = next(iter(imcsim.collect_events(xnet)))
    counts = []
    for runner in (lambda: predict_logits(xnet, x, timesteps=4), lambda: run_dynamic(xnet, x, 0.0, 4, batch_size=7)):
        imcsim.reset_events(xnet)
        runner()
        counts.append(imcsim.collect_events(xnet)[first])
    assert counts[0] == counts[1]
    assert counts[0]["vectors"] == 20  # once per inference, not 4 x


def test_per_sample_cost_sums_to_the_run_and_edp_per_sample_is_not_smaller():
    from imcsim.cost import Technology, estimate, per_sample_cost

    torch.manual_seed(0)
    net = imcsim.mlp(in_shape=(1, 8, 8), hidden=(32,), kind="snn", timesteps=4).eval()
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    xnet = imcsim.convert(net, imcsim.HardwareConfig.preset("rram"), calibration=x)
    tech = Technology.preset("spikesim-65nm-rram")
    p2 = torch.softmax(predict_logits(xnet, x, timesteps=4)[:2].sum(0).double(), -1)
    theta = float((-(p2 * p2.log()).sum(-1) / math.log(10)).median())  # about half exit by step 2
    imcsim.reset_events(xnet)
    run = run_dynamic(xnet, x, theta, 4, batch_size=13, record_steps=True)
    hist = run.histogram()
    assert sum(1 for v in hist.values() if v) >= 2  # samples exit at different steps
    rep = estimate(xnet, tech, timesteps=run.avg_timesteps)
    ps = per_sample_cost(xnet, tech, run)
    assert ps["mean_energy_J"] == pytest.approx(rep.energy_J, rel=1e-9)
    assert ps["mean_latency_s"] == pytest.approx(rep.latency_s, rel=1e-9)
    assert ps["edp_of_means_Js"] == pytest.approx(rep.edp_Js, rel=1e-9)
    assert ps["edp_per_sample_Js"] >= ps["edp_of_means_Js"] * (1 - 1e-12)
    # a sample exiting at step t costs the first t steps' per-sample prices
    E = torch.tensor(ps["energy_per_step_J"], dtype=torch.float64).cumsum(0)
    for i in range(len(x)):
        assert float(ps["energy_J"][i]) == pytest.approx(float(E[run.exit_steps[i] - 1]))
    with pytest.raises(ValueError, match="record_steps=True"):
        per_sample_cost(xnet, tech, run_dynamic(xnet, x, theta, 4))
