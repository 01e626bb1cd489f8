"""Conductance drift and the statistical PCM model: drawn conductances against the stated
formulas over 10^5+ devices (numerical integration as the reference), drift compensation on
a noiseless array, and t = t0 as the undrifted chip, bit for bit."""

import math

import pytest
import torch
from scipy import integrate, stats

from crossbar_models import DeviceModel
from crossbar_models import drift as D
from imcsim.errors import ConfigError
from imcsim.hardware import HardwareConfig

N = 200_000


def _folded_moments(mu, sd, t, t0, k):
    """E[(t/t0)^(-k nu)] for nu = |X|, X ~ N(mu, sd), by quadrature over the normal law."""
    a = math.log(t / t0)
    f = lambda x: math.exp(-k * abs(x) * a) * stats.norm.pdf(x, mu, sd)  # noqa: E731
    return integrate.quad(f, mu - 12 * sd, mu + 12 * sd, limit=200)[0]


@pytest.mark.parametrize("t", [3600.0, 86400.0, 3.2e7])
def test_power_law_drift_matches_its_formula(t):
    dev = DeviceModel(g_on=1e-5, g_off=1e-7, drift="power", nu_mean=0.06, nu_std=0.02, time=t, t0=20.0)
    g = torch.full((N,), 5e-6, dtype=torch.float64)
    G = dev.program(g, torch.Generator().manual_seed(1)) / 5e-6
    m1 = _folded_moments(0.06, 0.02, t, 20.0, 1)
    m2 = _folded_moments(0.06, 0.02, t, 20.0, 2)
    sd = math.sqrt(m2 - m1 * m1)
    assert abs(G.mean().item() - m1) < 5 * sd / math.sqrt(N)
    assert G.std().item() == pytest.approx(sd, rel=0.02)
    # the exponents themselves: |N(0.06, 0.02)|
    nu = -torch.log(G) / math.log(t / 20.0)
    assert nu.mean().item() == pytest.approx(0.06, abs=5 * 0.02 / math.sqrt(N))


@pytest.mark.parametrize("x", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("t", [20.0, 3600.0, 2.6e6])
def test_pcm_drift_and_read_noise_match_the_model(x, t):
    """Mean and spread of PCM conductances at time t (drift exponent and accumulated 1/f
    noise of the stated model) against the formulas, 2e5 devices per point."""
    g_max = 25e-6
    dev = DeviceModel(g_on=g_max, g_off=1e-7, drift="pcm", time=t)
    g = torch.full((N,), x * g_max, dtype=torch.float64)
    G = dev.program(g, torch.Generator().manual_seed(2)) / (x * g_max)
    mu = min(max(-0.0155 * math.log(x) + 0.0244, 0.049), 0.1)
    sd_nu = min(max(-0.0125 * math.log(x) - 0.0059, 0.008), 0.045)
    s = min(0.0088 / max(x ** 0.65, 1e-3), 0.2) * math.sqrt(math.log((t + 250e-9) / (2 * 250e-9)))
    if t > 20.0:
        m1, m2 = _folded_moments(mu, sd_nu, t, 20.0, 1), _folded_moments(mu, sd_nu, t, 20.0, 2)
    else:
        m1 = m2 = 1.0
    mean, var = m1, m2 * (1 + s * s) - m1 * m1  # g = f (1 + s eps), f and eps independent (clamp at 0 negligible)
    assert abs(G.mean().item() - mean) < 5 * math.sqrt(var / N)
    assert G.var().item() == pytest.approx(var, rel=0.03)


def test_pcm_programming_noise_matches_its_polynomial():
    g_max = 25e-6
    dev = DeviceModel(g_on=g_max, g_off=1e-7, variation=1.0, variation_kind="pcm")
    for x in (0.3, 0.7, 1.0):
        g = torch.full((N,), x * g_max, dtype=torch.float64)
        G = dev.program(g, torch.Generator().manual_seed(3))
        sigma = (0.26348 + 1.9650 * x - 1.1731 * x * x) * 1e-6
        assert abs(G.mean().item() - x * g_max) < 5 * sigma / math.sqrt(N)
        assert G.std().item() == pytest.approx(sigma, rel=0.01)


@pytest.mark.parametrize("per", ["global", "column"])
@pytest.mark.parametrize("kind", ["pcm", "power"])
def test_compensation_restores_the_mean_column_output(kind, per):
    """A noiseless array (no programming noise) read with random inputs: with compensation
    the mean column output at every t is within 1 % of the undrifted one; without, it is not
    (past the first hour)."""
    gen = torch.Generator().manual_seed(4)
    levels = torch.randint(0, 4, (8, 128, 64), generator=gen).to(torch.float64)
    base = DeviceModel(g_on=25e-6, g_off=1e-7, drift=kind, nu_mean=0.08, nu_std=0.03)
    target = base.level_conductance(levels)
    v = (torch.rand(8, 32, 128, generator=gen) < 0.5).to(torch.float64)
    y0 = (v @ target).mean().item()
    for t in (1.0, 3600.0, 86400.0, 2.6e6, 3.2e7):
        raw = DeviceModel(**{**base.__dict__, "time": t}).program(target, torch.Generator().manual_seed(5))
        comp = DeviceModel(**{**base.__dict__, "time": t, "drift_compensation": per}).program(
            target, torch.Generator().manual_seed(5))
        assert (v @ comp).mean().item() == pytest.approx(y0, rel=0.01), t
        if t >= 86400:
            assert abs((v @ raw).mean().item() / y0 - 1) > 0.2, t


def test_t0_is_the_undrifted_chip_bit_for_bit():
    g = torch.rand(64, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 1e-5
    plain = DeviceModel(g_on=1e-5, g_off=1e-7, variation=0.05, p_stuck_on=0.01)
    drifting = DeviceModel(**{**plain.__dict__, "drift": "power", "nu_mean": 0.1, "nu_std": 0.05})
    for t in (0.0, 5.0, 20.0):
        assert torch.equal(DeviceModel(**{**drifting.__dict__, "time": t}).program(g, torch.Generator().manual_seed(7)),
                           plain.program(g, torch.Generator().manual_seed(7)))
    later = DeviceModel(**{**drifting.__dict__, "time": 20.001}).program(g, torch.Generator().manual_seed(7))
    assert not torch.equal(later, plain.program(g, torch.Generator().manual_seed(7)))


@pytest.mark.filterwarnings("ignore::imcsim.errors.CalibrationWarning")
def test_a_network_at_t0_equals_the_undrifted_network():
    from imcsim import convert, models

    net = models.mlp(in_shape=(16,), hidden=(24,), num_classes=4, kind="snn", timesteps=3).eval()
    hw = HardwareConfig.preset("rram")
    x = torch.rand(5, 16, generator=torch.Generator().manual_seed(8))
    drift = hw.replace(**{"device.drift": "power", "device.nu_mean": 0.1, "device.time": 20.0})
    a, b = convert(net, hw, calibration=x), convert(net, drift, calibration=x)
    assert torch.equal(a(x), b(x))
    later = convert(net, drift.replace(**{"device.time": 3.2e7}), calibration=x)
    assert not torch.equal(a(x), later(x))


def test_config_round_trip_and_errors():
    pcm = HardwareConfig.preset("pcm")
    assert HardwareConfig.from_dict(pcm.to_dict()) == pcm
    assert pcm.to_dict()["device"]["drift"] == "pcm"
    assert "drift" not in HardwareConfig.preset("rram").to_dict()["device"]  # old records unchanged
    with pytest.raises(ConfigError, match="device.time"):
        HardwareConfig.from_dict({**pcm.to_dict(), "device": {**pcm.to_dict()["device"], "time": -1.0}})
    with pytest.raises(ConfigError, match="device.drift"):
        HardwareConfig.from_dict({**pcm.to_dict(), "device": {**pcm.to_dict()["device"], "drift": "linear"}})
    with pytest.raises(ConfigError, match="device.drift_compensation"):
        HardwareConfig.from_dict({**pcm.to_dict(), "device": {**pcm.to_dict()["device"], "drift_compensation": "x"}})


def test_pcm_nu_statistics_follow_the_fit():
    g = torch.tensor([1e-7 * 25, 0.1, 0.5, 1.0], dtype=torch.float64) * 25e-6
    mu, sd = D.pcm_nu_stats(g, 25e-6)
    assert mu[-1].item() == pytest.approx(0.049) and sd[-1].item() == pytest.approx(0.008)
    assert mu[1].item() == pytest.approx(-0.0155 * math.log(0.1) + 0.0244)
    assert mu[0].item() == pytest.approx(0.1) and sd[0].item() == pytest.approx(0.045)


@pytest.mark.parametrize("t", [3600.0, 86400.0, 172800.0, 3.2e7])
def test_rram_relaxation_spread_matches_the_published_fits(t):
    """Over 2e5 cells per level: the added deviation is zero-mean with the spread
    sqrt(sigma(t)^2 - sigma(1 s)^2) of Wan et al.'s polynomial fits (numpy's polyval, log10-t
    interpolation between the fits, the 2-day fit beyond)."""
    import numpy as np

    g_on = 1e-5
    dev = DeviceModel(g_on=g_on, g_off=1e-7, drift="rram-relaxation", time=t)
    fits = {1.0: [-16.815, 45.393, -43.853, 16.030, 0.348], 86400.0: [-16.458, 47.095, -50.773, 22.086, 0.701],
            172800.0: [-11.934, 37.062, -43.507, 20.274, 0.782]}  # highest power first (np.polyval)

    def sigma(x, tt):
        tt = min(max(tt, 1.0), 172800.0)
        keys = sorted(fits)
        lo = max(k for k in keys if k <= tt)
        if lo == keys[-1]:
            s = np.polyval(fits[lo], x)
        else:
            hi = keys[keys.index(lo) + 1]
            w = (np.log10(tt) - np.log10(lo)) / (np.log10(hi) - np.log10(lo))
            s = (1 - w) * np.polyval(fits[lo], x) + w * np.polyval(fits[hi], x)
        return max(s, 0.0) * 1e-6 * g_on / 40e-6

    for x in (0.25, 0.5, 1.0):
        target = torch.full((200_000,), x * g_on, dtype=torch.float64)
        d = dev.program(target, torch.Generator().manual_seed(11)) - target
        want = math.sqrt(max(sigma(x, t) ** 2 - sigma(x, 1.0) ** 2, 0.0))
        assert want > 0
        assert abs(d.mean().item()) < 5 * want / math.sqrt(2e5)
        assert d.std().item() == pytest.approx(want, rel=0.01)
    # up to 1 s after programming nothing has relaxed: the programmed chip bit for bit
    g = torch.rand(32, 32, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * g_on
    plain = DeviceModel(g_on=g_on, g_off=1e-7, variation=0.05)
    early = DeviceModel(**{**plain.__dict__, "drift": "rram-relaxation", "time": 1.0})
    assert torch.equal(early.program(g, torch.Generator().manual_seed(3)), plain.program(g, torch.Generator().manual_seed(3)))


@pytest.mark.filterwarnings("ignore::imcsim.errors.CalibrationWarning")
def test_a_chip_calibrated_at_programming_keeps_those_ranges_as_it_drifts():
    from imcsim import convert, reprogram
    from imcsim.convert import crossbar_layers
    from imcsim import models

    net = models.mlp(in_shape=(16,), hidden=(24,), num_classes=4, kind="snn", timesteps=3).eval()
    x = torch.rand(6, 16, generator=torch.Generator().manual_seed(8))
    drift = HardwareConfig.preset("rram").replace(**{"device.drift": "power", "device.nu_mean": 0.1})
    year = drift.replace(**{"device.time": 3.2e7})
    factory = year.replace(**{"adc.calibrated_at": "programming"})

    def layers(m):
        return [layer for _, layer in crossbar_layers(m)]

    fresh = convert(net, drift, calibration=x, seed=3)  # read right after programming (time 0)
    recal = convert(net, year, calibration=x, seed=3)  # drifted a year, ADC ranges set on the drifted currents
    kept = convert(net, factory, calibration=x, seed=3)  # drifted a year, ADC ranges from the day it was programmed
    for f, r, k in zip(layers(fresh), layers(recal), layers(kept)):
        assert k.adc_full_scale == f.adc_full_scale != r.adc_full_scale  # drift shrank the currents recal saw
        assert torch.equal(k.mats, r.mats) and k.read_time == 3.2e7  # the same drifted chip is read
        r.adc_full_scale = f.adc_full_scale  # by hand: the drifted chip with the fresh chip's ranges
    assert torch.equal(kept(x), recal(x))
    # another instance by reprogram equals converting it directly
    again, direct = reprogram(kept, 5, calibration=x), convert(net, factory, calibration=x, seed=5)
    assert [m.adc_full_scale for m in layers(again)] == [m.adc_full_scale for m in layers(direct)]
    assert all(torch.equal(a.mats, b.mats) for a, b in zip(layers(again), layers(direct)))
    assert torch.equal(again(x), direct(x))
    # a column correction is fitted on the fresh chip too
    cols = {"adc.correction": "columns"}
    f2, k2 = convert(net, drift.replace(**cols), calibration=x), convert(net, factory.replace(**cols), calibration=x)
    assert all(torch.equal(a.col_gain, b.col_gain) for a, b in zip(layers(f2), layers(k2)))
    # nothing drifted: the option changes nothing
    assert torch.equal(convert(net, drift.replace(**{"adc.calibrated_at": "programming"}), calibration=x, seed=3)(x),
                       fresh(x))


def test_calibrated_at_round_trips_and_is_checked():
    hw = HardwareConfig.preset("pcm").replace(**{"adc.calibrated_at": "programming"})
    assert HardwareConfig.from_dict(hw.to_dict()) == hw
    assert "calibrated_at" not in HardwareConfig.preset("pcm").to_dict()["adc"]  # old records unchanged
    with pytest.raises(ConfigError, match="adc.calibrated_at.*'later'"):
        hw.replace(**{"adc.calibrated_at": "later"})
