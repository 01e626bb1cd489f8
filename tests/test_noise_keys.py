"""Keyed read noise: the distribution, and independence of batch size, batch composition,
chunking, early exits and the repetition shortcut (issue: batch-independent reproducible noise)."""

import pytest
import scipy.stats as st
import torch

import imcsim
from crossbar_models.noise import NORMAL_TABLE, element_offsets, fold_key, keyed_normal, keyed_uniform
from imcsim.datasets import load_digits
from imcsim.dynamic import exit_decisions, run_dynamic
from imcsim.training import TrainConfig, predict_logits, train


def test_int32_multiplies_wrap_around():
    # the element hash relies on two's-complement wrap-around of int32 products
    assert (torch.tensor([2**30], dtype=torch.int32) * 4).item() == 0
    assert (torch.tensor([-(2**31)], dtype=torch.int32) * -1).item() == -(2**31)


def test_keyed_normal_is_standard_normal_and_independent():
    keys = fold_key(3, torch.arange(4096), 1)
    e = keyed_normal(keys, element_offsets(512)).double()
    assert abs(e.mean().item()) < 4 * (1 / e.numel()) ** 0.5 * 2
    assert e.var().item() == pytest.approx(1.0, abs=0.01)
    assert (e**4).mean().item() == pytest.approx(3.0, abs=0.05)  # Gaussian kurtosis
    assert st.kstest(e.reshape(-1)[::7].numpy(), "norm").pvalue > 1e-3
    flat = e.reshape(4096, 512)
    for a, b in ((flat[:, :-1], flat[:, 1:]), (flat[:-1], flat[1:])):  # neighbouring elements / keys
        r = torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1].item()
        assert abs(r) < 0.005
    assert NORMAL_TABLE.abs().max().item() == pytest.approx(4.325, abs=0.001)  # the 0.5/65536 quantile
    u = keyed_uniform(keys, element_offsets(64))
    assert 0 < u.min().item() and u.max().item() < 1 and u.mean().item() == pytest.approx(0.5, abs=0.005)


def test_keys_are_pure_functions_of_their_parts():
    a = fold_key(1, torch.tensor([5, 6, 7]), 2)
    b = fold_key(1, torch.tensor([7, 6, 5]), 2).flip(0)
    assert torch.equal(a, b)
    assert len(set(fold_key(1, torch.arange(10000), 2).tolist())) == 10000
    assert not torch.equal(fold_key(1, torch.arange(5), 2), fold_key(1, torch.arange(5), 3))


@pytest.fixture(scope="module")
def chip():
    torch.manual_seed(0)
    d = load_digits()
    net = imcsim.convnet(in_shape=(1, 8, 8), channels=(4, 8), hidden=32, kind="snn", timesteps=4)
    train(net, d.x_train, d.y_train, TrainConfig(epochs=2), progress=False)
    hw = imcsim.HardwareConfig.preset("rram")
    return imcsim.convert(net.eval(), hw, calibration=d.x_train[:64]), d.x_test[:60]


def test_batch_size_and_composition_do_not_change_results(chip):
    model, x = chip
    outs = [predict_logits(model, x, batch_size=b) for b in (1, 7, 60)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    # a sample keeps its result when evaluated amid other samples, or as part of a shifted set
    part = predict_logits(model, x[20:40], sample_offset=20)
    assert torch.equal(part, outs[0][:, 20:40])
    # another read seed: another noise realisation of the same chip
    assert not torch.equal(predict_logits(model, x, read_seed=1), outs[0])


def test_dynamic_exits_equal_the_pure_rule_with_noise(chip):
    model, x = chip
    logits = predict_logits(model, x, batch_size=13)
    for theta in (0.05, 0.2, 0.5, 0.9):
        run = run_dynamic(model, x, theta, 4, batch_size=9)
        steps, pred = exit_decisions(logits, theta)
        assert torch.equal(run.exit_steps, steps) and torch.equal(run.predictions, pred)


def test_reading_a_repeated_input_once_per_step_changes_nothing(chip):
    model, x = chip
    first = model.body[0]
    h = x[:10].unsqueeze(0).expand(4, 10, 1, 8, 8).reshape(40, 1, 8, 8)
    with torch.no_grad(), imcsim.read_context(10):
        fast = first(h)  # detected as 4 identical steps: currents computed once
    h2 = h.clone()
    h2[-1, 0, 0, 0] += 1e-7  # one pixel differs: no repetition, every step read in full
    with torch.no_grad(), imcsim.read_context(10):
        slow = first(h2)
    assert torch.equal(fast[:30], slow[:30])
