"""Device model: levels, sampled statistics, reproducibility, fault rates, read noise."""

import math

import pytest
import torch

from crossbar_models import DeviceModel, column_read_noise

N = 200_000


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_levels_are_uniform_between_g_off_and_g_on():
    d = DeviceModel(g_on=1e-4, g_off=1e-6, bits_per_cell=2)
    assert d.levels == 4
    G = d.level_conductance(torch.arange(4.0, dtype=torch.float64))
    expect = torch.tensor([1e-6, 1e-6 + 33e-6, 1e-6 + 66e-6, 1e-4], dtype=torch.float64)
    torch.testing.assert_close(G, expect, rtol=1e-12, atol=0)
    assert d.on_off_ratio == pytest.approx(100.0)
    assert DeviceModel(g_off=0.0).on_off_ratio == math.inf


def test_gaussian_variation_statistics():
    d = DeviceModel(variation=0.1)
    target = torch.full((N,), 5e-5, dtype=torch.float64)
    G = d.program(target, _gen(0))
    rel = G / target - 1.0
    assert abs(rel.mean().item()) < 4 * 0.1 / math.sqrt(N)
    assert rel.std().item() == pytest.approx(0.1, rel=0.02)


def test_lognormal_variation_statistics_and_positivity():
    d = DeviceModel(variation=0.3, variation_kind="lognormal")
    target = torch.full((N,), 5e-5, dtype=torch.float64)
    G = d.program(target, _gen(1))
    assert bool((G > 0).all())
    assert (G.mean() / 5e-5).item() == pytest.approx(1.0, abs=0.005)  # mean-preserving
    assert torch.log(G).std().item() == pytest.approx(0.3, rel=0.02)


def test_same_seed_same_chip_other_seed_other_chip():
    d = DeviceModel(variation=0.05, p_stuck_on=0.01, p_stuck_off=0.02)
    target = torch.full((64, 64), 3e-5)
    a, b, c = d.program(target, _gen(7)), d.program(target, _gen(7)), d.program(target, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stuck_at_fault_rates():
    d = DeviceModel(p_stuck_on=0.03, p_stuck_off=0.05)
    target = torch.full((N,), 5e-5, dtype=torch.float64)
    G = d.program(target, _gen(2))
    on = (G == d.g_on).double().mean().item()
    off = (G == d.g_off).double().mean().item()
    for rate, p in ((on, 0.03), (off, 0.05)):
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / N)
    assert ((G == 5e-5).double().mean().item()) == pytest.approx(0.92, abs=0.005)


def test_no_nonideality_is_identity_and_needs_no_generator():
    d = DeviceModel()
    t = torch.rand(5, 5) * 1e-4
    assert torch.equal(d.program(t), t)
    assert d.is_ideal


def test_read_noise_at_the_column_matches_per_cell_noise():
    # Reference: many explicit per-cell noisy reads; compare the column current variance.
    d = DeviceModel(read_noise=0.05)
    g = _gen(3)
    G = torch.rand(12, 4, generator=g, dtype=torch.float64) * 1e-4 + 1e-6
    v = torch.rand(1, 12, generator=g, dtype=torch.float64) * 0.2
    reads = torch.stack([v @ d.read(G, g) for _ in range(20_000)])  # (n, 1, 4)
    noise = torch.stack([column_read_noise(v, G, 0.05, g) for _ in range(20_000)])
    torch.testing.assert_close(reads.mean(0), v @ G, rtol=2e-3, atol=0)
    torch.testing.assert_close(noise.std(0), reads.std(0), rtol=0.03, atol=0)
    assert abs(noise.mean().item()) < 0.05 * noise.std().item()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(g_on=1e-6, g_off=1e-5), r"g_off must be < g_on"),
        (dict(g_on=-1.0), r"DeviceModel.g_on must be > 0.0, got -1.0"),
        (dict(bits_per_cell=0), r"bits_per_cell must be >= 1, got 0"),
        (dict(bits_per_cell=2.5), r"bits_per_cell must be an integer, got 2.5"),
        (dict(variation=-0.1), r"variation must be >= 0.0"),
        (dict(variation_kind="uniform"), r"variation_kind must be one of 'gaussian', 'lognormal', 'pcm', got 'uniform'"),
        (dict(p_stuck_on=0.7, p_stuck_off=0.5), r"p_stuck_on \+ p_stuck_off must be <= 1"),
        (dict(p_stuck_off=1.5), r"p_stuck_off must be <= 1.0"),
    ],
)
def test_bad_device_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeviceModel(**kwargs)


def test_bad_levels_and_missing_generator():
    d = DeviceModel(bits_per_cell=2, variation=0.1)
    with pytest.raises(ValueError, match=r"level must hold integers in \[0, 3\]"):
        d.level_conductance(torch.tensor([0.0, 4.0]))
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        d.program(torch.ones(3))
