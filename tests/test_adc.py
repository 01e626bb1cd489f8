"""ADC: levels, clipping, monotonicity, calibration, straight-through gradient."""

import pytest
import torch

from crossbar_models import ADC, RangeObserver


def test_unipolar_levels_and_clipping():
    adc = ADC(bits=3, full_scale=7.0)  # lsb = 1
    x = torch.tensor([-2.0, 0.0, 0.4, 0.6, 3.2, 6.9, 7.0, 7.4, 100.0])
    assert adc(x).tolist() == [0.0, 0.0, 0.0, 1.0, 3.0, 7.0, 7.0, 7.0, 7.0]
    assert adc.codes(x).tolist() == [0, 0, 0, 1, 3, 7, 7, 7, 7]
    ramp = torch.linspace(-1, 9, 10_001, dtype=torch.float64)
    assert torch.unique(adc(ramp)).numel() == 8  # 2**bits levels


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 12, 16])
def test_level_count_step_and_monotonic(bits):
    adc = ADC(bits=bits, full_scale=3e-5)
    assert adc.lsb == pytest.approx(3e-5 / (2**bits - 1))
    ramp = torch.linspace(-1e-6, 4e-5, 400_001, dtype=torch.float64)
    y = adc(ramp)
    assert bool((y[1:] >= y[:-1]).all())  # monotone
    assert y.min().item() == 0.0 and y.max().item() == pytest.approx(3e-5)
    steps = torch.unique(y).diff()
    torch.testing.assert_close(steps, torch.full_like(steps, adc.lsb), rtol=1e-6, atol=0)
    # Independent integer reference away from ties: round(x / lsb), clipped.
    x = (torch.arange(2**bits + 3, dtype=torch.float64) + 0.3) * adc.lsb
    expect = torch.clamp(torch.arange(2**bits + 3), max=2**bits - 1)
    assert torch.equal(adc.codes(x), expect)


def test_float32_path_agrees_with_float64_path():
    adc = ADC(bits=6, full_scale=2.0)
    x = (torch.arange(-5, 70, dtype=torch.float64) + 0.37) * adc.lsb
    assert torch.equal(adc(x.float()).double().div(adc.lsb).round(), adc(x).div(adc.lsb).round())
    xg = x.clone().requires_grad_(True)
    xf = x.float().requires_grad_(True)
    adc(xg).sum().backward()
    adc(xf).sum().backward()
    assert torch.equal(xg.grad.float(), xf.grad)


def test_signed_adc_is_symmetric():
    adc = ADC(bits=4, full_scale=7.0, signed=True)  # codes -7..7, lsb 1
    x = torch.tensor([-9.0, -6.6, -0.4, 0.0, 2.6, 8.0])
    assert adc(x).tolist() == [-7.0, -7.0, 0.0, 0.0, 3.0, 7.0]
    assert adc.code_min == -7 and adc.code_max == 7


def test_straight_through_gradient_is_clipped():
    adc = ADC(bits=2, full_scale=3.0)
    x = torch.tensor([-1.0, 0.2, 1.7, 2.9, 5.0], requires_grad=True)
    adc(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_calibration_from_observed_currents():
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(100_000, generator=g, dtype=torch.float64) * 2e-5
    adc = ADC.calibrated(4, obs)
    assert adc.full_scale == obs.max().item()
    adc99 = ADC.calibrated(4, obs, percentile=99.0)
    assert adc99.full_scale == pytest.approx(0.99 * 2e-5, rel=0.01)
    # Accumulating over batches equals one pass over everything (for the max).
    ro = RangeObserver()
    for chunk in obs.chunk(7):
        ro.update(chunk)
    assert ro.full_scale() == adc.full_scale
    # Calibrated range clips far less than a much smaller fixed one.
    small = ADC(4, 5e-6)
    assert (small(obs) - obs).abs().mean() > 10 * (adc(obs) - obs).abs().mean()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bits=0, full_scale=1.0), r"ADC.bits must be >= 1, got 0"),
        (dict(bits=17, full_scale=1.0), r"ADC.bits must be <= 16, got 17"),
        (dict(bits=1, full_scale=1.0, signed=True), r"ADC.bits must be >= 2"),
        (dict(bits=4, full_scale=0.0), r"ADC.full_scale must be >= 1e-30, got 0.0"),
        (dict(bits=4, full_scale=1e-300), r"ADC.full_scale must be >= 1e-30, got 1e-300"),
        (dict(bits=4, full_scale=1e40), r"ADC.full_scale must be <= 1e\+30, got 1e\+40"),
        (dict(bits=4, full_scale=float("inf")), r"ADC.full_scale must be finite"),
    ],
)
def test_bad_adc(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ADC(**kwargs)


def test_calibration_errors():
    with pytest.raises(ValueError, match="no nonzero currents were observed"):
        RangeObserver().full_scale()
    with pytest.raises(ValueError, match="percentile must be <= 100.0"):
        ADC.calibrated(4, torch.ones(3), percentile=150)
    with pytest.raises(ValueError, match="must be finite"):
        RangeObserver().update(torch.tensor([1.0, float("nan")]))


@pytest.mark.parametrize("fs", [1e-30, 1e30])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adc_exact_at_the_accepted_extremes(fs, dtype):
    adc = ADC(4, fs)
    x = torch.tensor([0.0, 0.26, 0.5, 0.74, 1.0, 2.0], dtype=torch.float64) * fs
    codes = adc.codes(x.to(dtype))
    assert codes.tolist() == [0, 4, 8, 11, 15, 15]  # 0.26*15 = 3.9 -> 4, 0.74*15 = 11.1 -> 11
    assert torch.isfinite(adc(x.to(dtype))).all()


def test_adc_refuses_non_finite_input():
    with pytest.raises(ValueError, match="ADC input must be finite, got nan"):
        ADC(4, 1.0)(torch.tensor([0.5, float("nan")]))


def test_range_observer_is_independent_of_order_and_chunking_and_bounded():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(200_000, generator=g, dtype=torch.float64) ** 3 * 37.0
    a, b = RangeObserver(), RangeObserver()
    a.update(x)
    perm = x[torch.randperm(x.numel(), generator=g)]
    for chunk in perm.split(999):  # other order, other chunks, zeros recorded separately
        b.update(chunk)
    b.update_zeros(0)
    for p in (50.0, 99.0, 99.9, 100.0):
        assert a.full_scale(p) == b.full_scale(p)
    # a percentile is the upper edge of its histogram bin: within R / bins above the exact value
    exact = torch.sort(x).values
    for p in (50.0, 99.0, 99.9):
        k = int(round(p / 100 * x.numel()))
        v = exact[k - 1].item()
        assert v <= a.full_scale(p) <= v + a.range / a.bins
    assert a.range == 64.0 and a._hist.numel() == a.bins  # memory: one histogram, whatever the data
    # zero reads count towards the percentile
    c = RangeObserver()
    c.update(x)
    c.update_zeros(x.numel())
    assert c.full_scale(99.0) < a.full_scale(99.0)
    with pytest.raises(ValueError, match="bins must be a power of two"):
        RangeObserver(bins=1000)


@pytest.mark.parametrize("fs", [1e-30, 5.0 / 7, 17.3, 1e30])
@pytest.mark.parametrize("signed", [False, True])
def test_the_read_paths_in_place_quantiser_equals_the_adc_bit_for_bit(fs, signed):
    from imcsim.tiles.readout import code_unit, quantize

    adc = ADC(4, fs, signed=signed)
    g = torch.Generator().manual_seed(2)
    ties = ((torch.arange(-40, 40, dtype=torch.float64) + 0.5) * adc.lsb).to(torch.float32)  # round half to even
    for x in ((torch.rand(50_000, generator=g) * 2.4 - 1.2) * fs, ties, torch.nextafter(ties, ties + 1),
              ((torch.rand(50_000, generator=g, dtype=torch.float64) * 2.4 - 1.2) * fs)):
        out, clipped = quantize(x.clone(), adc, keep_clipped=True)
        assert torch.equal(out, adc(x))
        codes, _ = quantize(x.clone(), adc, codes=True)  # the codes the digital side sums, valued once
        assert torch.equal(codes, torch.round(codes)) and codes.min() >= adc.code_min and codes.max() <= adc.code_max
        assert torch.equal(codes * code_unit(adc, x.dtype), adc(x))
        assert torch.equal(clipped.bool(), (x < (adc.code_min - 0.5) * adc.lsb) | (x > (adc.code_max + 0.5) * adc.lsb))


def test_combine_reads_equals_the_shift_add_and_accumulation_done_one_by_one():
    """The dense reads' digital side in one batched product equals summing, read block by
    read block and slice by slice, the integer codes times their digital weights (groups,
    row tiles x planes, polarity x slice columns)."""
    from imcsim.tiles.readout import combine_reads

    g = torch.Generator().manual_seed(5)
    G, B, V, K, og = 3, 6, 5, 4, 7
    Y = torch.randint(-15, 16, (G, B, V, K * og), generator=g).float()
    block_w = torch.tensor([1.0, 2.0, 4.0] * 2)
    cw = [1.0, 4.0, -1.0, -4.0]
    ref = torch.zeros(V, G, og)
    for gi in range(G):
        for b in range(B):
            for k in range(K):
                ref[:, gi] += block_w[b] * cw[k] * Y[gi, b, :, k * og:(k + 1) * og]
    assert torch.equal(combine_reads(Y, block_w, cw, og), ref)
