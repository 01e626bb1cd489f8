"""Crossbar layers against an independent integer reference, and each non-ideality's effect."""

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from imcsim import CrossbarConv2d, CrossbarLinear, HardwareConfig, InputSpec, calibrate
from imcsim.errors import CalibrationError


def _int_weights(W, bits):
    """Reference quantisation, written independently of imcsim.mapping (integer arithmetic)."""
    q = 2 ** (bits - 1) - 1
    W = W.double()
    s = W.abs().amax(1, keepdim=True) / q
    return torch.clamp(torch.round(W / s), -q, q).long()


def _ideal(mapping, bpc, bits=4, rows=16, cols=16):
    return HardwareConfig.ideal(mapping=mapping, weight_bits=bits, rows=rows, cols=cols, **{"device.bits_per_cell": bpc})


CASES = list(itertools.product(["differential", "offset"], [1, 2, 3], [4, 6]))


@pytest.mark.parametrize("mapping, bpc, bits", CASES)
@pytest.mark.parametrize("in_bits", [1, 3])
def test_linear_is_exact_on_ideal_hardware(mapping, bpc, bits, in_bits):
    g = torch.Generator().manual_seed(bpc * 100 + bits + in_bits)
    lin = nn.Linear(37, 23)  # not multiples of the 16x16 tiles
    with torch.no_grad():
        lin.weight.copy_(torch.randn(23, 37, generator=g))
    spec = InputSpec("spike") if in_bits == 1 else InputSpec("quantized", in_bits, 1.0)
    layer = CrossbarLinear(lin, _ideal(mapping, bpc, bits), spec)
    x = torch.randint(0, 2**in_bits, (50, 37), generator=g).float()
    ref = x.long() @ _int_weights(lin.weight, bits).t()  # integer matmul
    assert layer.tiles.read_path == "linear"
    assert torch.equal(layer.tiles.integer_product(x), ref.double())
    layer.tiles.path = "reads"  # every plane and tile read simulated: the same integers
    assert torch.equal(layer.tiles.integer_product(x), ref.double())
    layer.tiles.path = "auto"
    # the full layer: integer result x per-channel scale x input step + bias
    scale = lin.weight.detach().double().abs().amax(1) / (2 ** (bits - 1) - 1)
    torch.testing.assert_close(layer(x), (ref.double() * scale + lin.bias.double()).float(), rtol=1e-6, atol=1e-6)


CONV_GEOMS = [  # (kernel, stride, padding, dilation)
    (3, 1, 1, 1),
    (3, 2, 0, 1),
    (1, 1, 0, 1),
    (5, 2, 2, 1),
    (3, 1, 2, 2),
    ((2, 3), (1, 2), (1, 0), 1),
]


@pytest.mark.parametrize("geom", CONV_GEOMS)
@pytest.mark.parametrize("mapping, bpc", [("differential", 2), ("offset", 1), ("differential", 3)])
def test_conv_is_exact_on_ideal_hardware(geom, mapping, bpc):
    k, s, p, d = geom
    g = torch.Generator().manual_seed(7)
    conv = nn.Conv2d(3, 5, k, stride=s, padding=p, dilation=d)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    layer = CrossbarConv2d(conv, _ideal(mapping, bpc, rows=8, cols=12), InputSpec("quantized", 2, 1.0))
    x = torch.randint(0, 4, (2, 3, 9, 10), generator=g).float()
    wq = _int_weights(conv.weight.reshape(5, -1), 4).reshape(conv.weight.shape)
    ref = F.conv2d(x.double(), wq.double(), None, s, p, d)  # integer-valued, exact in float64
    scale = conv.weight.detach().reshape(5, -1).double().abs().amax(1) / 7
    expect = ref * scale.view(1, -1, 1, 1) + conv.bias.detach().double().view(1, -1, 1, 1)
    out = layer(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, expect.float(), rtol=1e-6, atol=1e-6)
    # and the integer product itself, exactly, on both read-outs
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s).transpose(1, 2).reshape(-1, 3 * conv.weight[0, 0].numel())
    for path in ("linear", "reads"):
        layer.tiles.path = path
        assert torch.equal(layer.tiles.integer_product(cols), (cols.long() @ wq.reshape(5, -1).t()).double())


@pytest.mark.parametrize("groups, c_in, c_out", [(2, 4, 6), (4, 4, 4), (3, 3, 6)])  # grouped, depthwise, multiplier
@pytest.mark.parametrize("path", ["linear", "reads"])
def test_grouped_and_depthwise_conv_exact_each_group_on_its_own_tiles(groups, c_in, c_out, path):
    g = torch.Generator().manual_seed(groups)
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    hw = _ideal("differential", 2, rows=8, cols=12)
    layer = CrossbarConv2d(conv, hw, InputSpec("quantized", 2, 1.0))
    layer.tiles.path = path
    t = layer.tiles
    assert t.groups == groups and t.in_group == c_in // groups * 9
    # tiles per group from that group's own matrix alone: nothing shared between groups
    assert t.grid.in_features == c_in // groups * 9 and t.grid.columns == c_out // groups * hw.columns_per_weight
    x = torch.randint(0, 4, (2, c_in, 6, 5), generator=g).float()
    wq = _int_weights(conv.weight.reshape(c_out, -1), 4).reshape(conv.weight.shape)
    ref = F.conv2d(x.double(), wq.double(), None, 1, 1, 1, groups)
    scale = conv.weight.detach().reshape(c_out, -1).double().abs().amax(1) / 7
    expect = ref * scale.view(1, -1, 1, 1) + conv.bias.detach().double().view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expect.float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", ["linear", "reads"])
def test_conv1d_exact(path):
    g = torch.Generator().manual_seed(11)
    conv = nn.Conv1d(3, 5, 4, stride=2, padding=3, dilation=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    layer = CrossbarConv2d(conv, _ideal("offset", 1, rows=8, cols=8), InputSpec("spike"))
    layer.tiles.path = path
    x = (torch.rand(3, 3, 17, generator=g) < 0.5).float()
    wq = _int_weights(conv.weight.reshape(5, -1), 4).reshape(conv.weight.shape)
    ref = F.conv1d(x.double(), wq.double(), None, 2, 3, 2) * (conv.weight.detach().reshape(5, -1).double().abs().amax(1) / 7).view(1, -1, 1)
    out = layer(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref.float(), rtol=1e-6, atol=1e-6)


def test_pair_adc_columns_never_straddle_tiles():
    # 6-bit differential weights, 1 bit per cell: 5 slices x 2 polarities = 10 columns per weight;
    # on 16-column tiles one weight fits per tile (6 columns left empty), never split.
    hw = HardwareConfig.ideal(weight_bits=6, rows=16, cols=16, **{"device.bits_per_cell": 1, "adc.per": "pair"})
    lin = nn.Linear(10, 3, bias=False)
    layer = CrossbarLinear(lin, hw, InputSpec("spike"))
    assert layer.tiles.grid.used_cols == 10 and layer.tiles.grid.col_tiles == 3
    x = (torch.rand(20, 10, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    ref = (x.long() @ _int_weights(lin.weight, 6).t()).double()
    layer.tiles.path = "reads"
    assert torch.equal(layer.tiles.integer_product(x), ref)
    assert layer.tiles.conversion_columns == 3 * 5  # one conversion per pair and slice
    with pytest.raises(ValueError, match="10 columns must share one tile, but a tile has only 8 columns"):
        CrossbarLinear(lin, hw.replace(cols=8), InputSpec("spike"))


def test_pair_adc_and_dac_inputs_lossless_are_exact_or_close():
    g = torch.Generator().manual_seed(3)
    lin = nn.Linear(20, 7, bias=False)
    hw = _ideal("differential", 2).replace(**{"adc.per": "pair"})
    layer = CrossbarLinear(lin, hw, InputSpec("quantized", 4, 1.0))
    x = torch.randint(0, 16, (9, 20), generator=g).float()
    ref = (x.long() @ _int_weights(lin.weight, 4).t()).double()
    assert torch.equal(layer.tiles.integer_product(x), ref)
    dac = CrossbarLinear(lin, hw.replace(**{"inputs.mode": "dac"}), InputSpec("quantized", 4, 1.0))
    torch.testing.assert_close(dac.tiles.integer_product(x), ref, rtol=1e-6, atol=1e-4)
    assert dac.tiles.driver().n_planes == 1 and layer.tiles.driver().n_planes == 4


# ------------------------------------------------------------------------ non-idealities


def _positive_layer(hw, n_in=64, n_out=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.rand(n_out, n_in, generator=g) + 0.1)  # all positive
    return CrossbarLinear(lin, hw, InputSpec("spike"), seed=seed)


def _spikes(n=200, n_in=64, p=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, n_in, generator=g) < p).float()


BASE = HardwareConfig.ideal(rows=64, cols=64, **{"device.g_off": 1e-6})


def test_wire_resistance_lowers_outputs_monotonically():
    x = _spikes()
    outs = [_positive_layer(BASE.replace(wires=type(BASE.wires)(r, r, r, r)))(x) for r in (0.0, 2.0, 10.0)]
    assert bool((outs[1] < outs[0]).all()) and bool((outs[2] < outs[1]).all())


@pytest.mark.parametrize("mapping,per", [("differential", "column"), ("differential", "pair"), ("offset", "column")])
@pytest.mark.parametrize("bits", [None, 4])
def test_more_wire_resistance_never_brings_outputs_closer_to_the_wire_free_chip(mapping, per, bits):
    """The issue's 'more wire resistance raises accuracy' (r_row 2.5 / 5 / 10 ohm): a physics
    error -- e.g. a digital correction that overshoots as IR drop grows -- would show here as
    an output error that falls with resistance. Signed weights, a finite on/off ratio, with a
    lossless and a 4-bit read-out: the error against the same chip without wires grows."""
    g = torch.Generator().manual_seed(7)
    lin = nn.Linear(64, 16, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(16, 64, generator=g))
    x = _spikes()
    hw = BASE.replace(mapping=mapping, **{"adc.per": per, "adc.bits": bits, "device.g_off": 5.88e-7})
    errs = []
    for r in (0.0, 2.5, 10.0, 40.0):
        layer = CrossbarLinear(lin, hw.replace(wires=type(BASE.wires)(r, r, 10 * r, 10 * r)), InputSpec("spike"))
        if bits is not None:
            calibrate(layer, x)
        y = layer(x)
        if r == 0:
            ref = y
        errs.append(float((y - ref).abs().mean() / ref.abs().mean()))
    if bits is None:  # exact read-out: strictly growing
        assert 0 == errs[0] < errs[1] < errs[2] < errs[3], errs
    else:  # a 4-bit read-out flips a few codes either way at small IR drop; large IR drop still hurts more
        assert errs[0] == 0 and errs[1] < errs[3] and errs[2] < errs[3], errs


@pytest.mark.parametrize("per", ["column", "pair"])
def test_a_chip_never_computes_better_than_its_ideal_counterpart(per):
    """The issue's 'with adc.per = pair the full rram chip beats its ideal counterpart by
    3 pp': per layer, over chip seeds, the non-ideal chip's error against the integer matmul
    is larger than its ideal counterpart's (same tiles, same 4-bit read-out)."""
    g = torch.Generator().manual_seed(11)
    lin = nn.Linear(96, 24, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(24, 96, generator=g))
    x = _spikes(n=300, n_in=96)
    ref = x.double() @ _int_weights(lin.weight, 4).t().double()
    hw = HardwareConfig.preset("rram").replace(**{"adc.per": per})

    def err(h, seed):
        layer = CrossbarLinear(lin, h, InputSpec("spike"), seed=seed)
        calibrate(layer, x)
        y = layer(x).double() / layer.tiles.w_scale.double().reshape(-1)  # back to integer units
        return float((y - ref).abs().mean())

    ideal = err(hw.ideal_counterpart(), 0)
    real = [err(hw, s) for s in range(4)]
    assert min(real) > ideal, (per, ideal, real)


def test_noise_dithers_a_coarse_read_out_which_is_how_a_noisy_pair_chip_can_beat_its_ideal_twin():
    """The issue's pair-ADC anomaly, explained (docs/reproducibility.md): a 4-bit signed
    converter rounds the exact, repeated currents of an ideal chip the same way every time
    (here 0.3 LSB always becomes code 0), while noise of about one LSB randomises the rounding
    so that conversions average to the true current (dither)."""
    from crossbar_models import ADC

    adc = ADC(4, 7.0, signed=True)  # LSB = 1.0
    x = torch.full((20000,), 0.3, dtype=torch.float64)
    assert bool((adc(x) == 0).all())  # deterministic: the signal is gone
    n = torch.randn(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.6
    assert float(adc(x + n).mean()) == pytest.approx(0.3, abs=0.03)  # dithered: right on average


def test_programming_variation_error_grows_with_sigma_and_is_seeded():
    x = _spikes()
    ideal = _positive_layer(BASE)(x)
    errs = []
    for sigma in (0.02, 0.1, 0.3):
        hw = BASE.replace(**{"device.variation": sigma})
        errs.append((_positive_layer(hw)(x) - ideal).abs().mean().item())
    assert 0 < errs[0] < errs[1] < errs[2]
    hw = BASE.replace(**{"device.variation": 0.1})
    assert torch.equal(_positive_layer(hw, seed=5)(x), _positive_layer(hw, seed=5)(x))
    assert not torch.equal(_positive_layer(hw, seed=5)(x), _positive_layer(hw, seed=6)(x))


def test_read_noise_varies_per_read_scales_with_sigma_and_is_reproducible():
    x = _spikes(n=1).expand(400, 64).contiguous()  # the same input read 400 times (400 samples)
    spread = []
    for sigma in (0.01, 0.05):
        layer = _positive_layer(BASE.replace(**{"device.read_noise": sigma}))
        y = layer(x)
        spread.append(y.std(0).mean().item())
        assert torch.equal(layer(x), y)  # keyed noise: same chip, same samples, same noisy reads
    assert spread[0] > 0 and spread[1] / spread[0] == pytest.approx(5.0, rel=0.15)
    clean = _positive_layer(BASE)(x[:1])
    noisy = _positive_layer(BASE.replace(**{"device.read_noise": 0.05}))(x)
    torch.testing.assert_close(noisy.mean(0), clean[0], rtol=0.02, atol=0)


def test_stuck_at_faults_push_outputs_the_right_way():
    # With offset mapping every cell adds to the output: stuck-on cells raise it,
    # stuck-off cells lower it, and more faults move it further.
    base = BASE.replace(mapping="offset")
    x = _spikes()
    ideal = _positive_layer(base)(x)
    shifts = []
    for kind in ("p_stuck_on", "p_stuck_off"):
        for p in (0.02, 0.1):
            shifts.append((_positive_layer(base.replace(**{f"device.{kind}": p}))(x) - ideal).mean().item())
    assert 0 < shifts[0] < shifts[1] and 0 > shifts[2] > shifts[3]


def test_fewer_adc_bits_more_error():
    x = _spikes()
    ideal = _positive_layer(BASE)(x)
    errs = []
    for bits in (8, 5, 3):
        layer = _positive_layer(BASE.replace(**{"adc.bits": bits}))
        calibrate(layer, x)
        errs.append((layer(x) - ideal).abs().mean().item())
    assert errs[0] < errs[1] < errs[2]
    fixed = _positive_layer(BASE.replace(**{"adc.bits": 5, "adc.range": "fixed"}))
    assert (fixed(x) - ideal).abs().mean().item() > errs[1]  # a worst-case range wastes levels


def test_events_are_counted_by_hand():
    hw = _ideal("differential", 2, rows=4, cols=8)  # 4-bit weights -> 2 slices x 2 polarities
    lin = nn.Linear(6, 3, bias=False)  # 2 row tiles (4 + 2 rows), 12 columns -> 2 col tiles
    layer = CrossbarLinear(lin, hw, InputSpec("spike"))
    x = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0.0]])
    layer(x)
    ev = layer.events.snapshot()
    # non-zero row-tile reads: v0 -> tiles {0, 1}, v1 -> none (skipped), v2 -> {0}: 3 row-tile reads
    assert ev == dict(vectors=3, vector_reads=2, tile_reads=3 * 2, active_rows=4 * 2, adc_conversions=3 * 12,
                      shift_adds=36, accumulations=1 * 3, outputs=9, input_bits=3 * 6)
    layer2 = CrossbarLinear(lin, hw.replace(skip_zero_reads=False), InputSpec("spike"))
    layer2(x)
    assert layer2.events.counts["tile_reads"] == 3 * 2 * 2 and layer2.events.counts["adc_conversions"] == 6 * 12
    assert layer2.events.counts["vector_reads"] == 3


# ------------------------------------------------------------------------ bad input


def test_spike_check_finds_a_bad_value_past_its_first_piece():
    """The spike-input check runs in pieces (no copy of a whole layer's spikes): a value
    that is not 0 / 1 in the last piece is still found and named."""
    from imcsim.crossbar import _CHECK_ELEMENTS

    spike = CrossbarLinear(nn.Linear(8, 4), HardwareConfig.ideal(), InputSpec("spike"), name="fc")
    x = torch.ones(2 * _CHECK_ELEMENTS // 8 + 3, 8)
    assert x.numel() > 2 * _CHECK_ELEMENTS
    spike(x)  # all 0 / 1: accepted
    x[-1, -1] = 0.25
    with pytest.raises(ValueError, match=r"'fc' expects binary spikes \(0 or 1\).*got 0.25"):
        spike(x)


def test_bad_inputs_give_clear_errors():
    lin = nn.Linear(8, 4)
    spike = CrossbarLinear(lin, HardwareConfig.ideal(), InputSpec("spike"), name="fc")
    with pytest.raises(ValueError, match=r"'fc' expects binary spikes \(0 or 1\).*got 0.5"):
        spike(torch.full((2, 8), 0.5))
    with pytest.raises(ValueError, match=r"'fc': inputs must be >= 0.*got min -1"):
        spike(torch.full((2, 8), -1.0))
    with pytest.raises(ValueError, match=r"'fc' expects inputs \(..., 8\), got \(2, 7\)"):
        spike(torch.zeros(2, 7))
    analog = CrossbarLinear(lin, HardwareConfig.ideal(), InputSpec("analog", 8, None), name="fc0")
    with pytest.raises(CalibrationError, match=r"'fc0' takes analog inputs whose range is not calibrated"):
        analog(torch.rand(2, 8))
    adc = CrossbarLinear(lin, HardwareConfig.preset("rram"), InputSpec("spike"), name="fc1")
    with pytest.raises(CalibrationError, match=r"'fc1' has a calibrated ADC range but saw no calibration data"):
        adc(torch.ones(2, 8))
    with pytest.raises(ValueError, match=r"padding_mode='circular' \(only 'zeros' is supported\)"):
        CrossbarConv2d(nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"), HardwareConfig.ideal())
    with pytest.raises(ValueError, match=r"'fc' expects binary spikes.*got nan|'fc': inputs must be finite, got nan"):
        spike(torch.full((2, 8), float("nan")))
    q = CrossbarLinear(lin, HardwareConfig.ideal(), InputSpec("quantized", 4, 0.5), name="q")
    with pytest.raises(ValueError, match=r"'q': inputs must be finite, got inf"):
        q(torch.full((2, 8), float("inf")))
    bad = nn.Linear(3, 2)
    with torch.no_grad():
        bad.weight[0, 1] = float("inf")
    with pytest.raises(ValueError, match=r"weight must be finite, got inf at index \(0, 1\)"):
        CrossbarLinear(bad, HardwareConfig.ideal())


def test_adc_range_is_calibrated_on_the_reads_performed():
    """Skipped all-zero reads produce no current to convert: a sparse layer's calibrated
    range equals the one calibrated on its non-zero input vectors alone; a chip that
    performs every read (skip_zero_reads = False) sees the zeros too and gets a lower range."""
    hw = BASE.replace(**{"adc.bits": 6, "adc.percentile": 95.0})
    x = _spikes(400, p=0.3, seed=5)
    x[::2] = 0.0  # half of the vectors are all zero
    fs = {}
    for skip in (True, False):
        a, b = _positive_layer(hw.replace(skip_zero_reads=skip)), _positive_layer(hw.replace(skip_zero_reads=skip))
        calibrate(a, x)
        calibrate(b, x[1::2])
        fs[skip] = (a.tiles.adc_full_scale, b.tiles.adc_full_scale)
    assert fs[True][0] == fs[True][1]
    assert fs[False][0] < fs[False][1] == fs[True][1]


@pytest.mark.parametrize("mode,spec", [("bit_serial", ("spike",)), ("bit_serial", ("quantized", 3, 0.5)),
                                       ("dac", ("quantized", 3, 0.5))])
@pytest.mark.parametrize("geom", [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, dilation=2, padding=2),
                                  dict(kernel_size=(1, 3), padding=(0, 1))])
@pytest.mark.parametrize("one_image_chunks", [False, True])
def test_whole_convolution_fast_path_equals_the_tile_reads_bits_and_events(mode, spec, geom, one_image_chunks,
                                                                           monkeypatch):
    """A lossless, noise-free conv runs as one F.conv2d with the mapped weights: outputs
    identical to the unfolded tile reads, and every event counter identical too (several
    row tiles, strides, dilation, padding; spikes, bit-serial and DAC inputs), also when
    its events are counted one image at a time (the chunks that bound their memory)."""
    import imcsim.crossbar
    from imcsim.crossbar import TiledMatrix
    from imcsim.events import reset_events

    if one_image_chunks:
        monkeypatch.setattr(imcsim.crossbar, "_CONV_CHUNK_ELEMENTS", 1)
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 7, **geom)
    hw = HardwareConfig.ideal().replace(rows=16, cols=16, **{"inputs.mode": mode, "inputs.bits": 3})
    x = (torch.rand(5, 12, 9, 11) < 0.3).float()
    if spec[0] == "quantized":
        x = torch.randint(0, 8, (5, 12, 9, 11)).float() * 0.5 * (torch.rand(5, 12, 9, 11) < 0.4)
    layer = CrossbarConv2d(conv, hw, InputSpec(*spec))
    assert layer.tiles.grid.row_tiles > 1 and layer.tiles.exact_conv_ready(x)
    with torch.no_grad():
        fast = layer(x)
        t = layer.tiles  # one copy of the weights: the linear read-out's is a view of the convolution's
        assert t.W_lin.untyped_storage().data_ptr() == t._conv_w.untyped_storage().data_ptr()
        ev_fast = dict(layer.events.counts)
        reset_events(layer)
        monkeypatch.setattr(TiledMatrix, "exact_conv_ready", lambda self, x: False)
        slow = layer(x)
        ev_slow = dict(layer.events.counts)
    assert torch.equal(fast, slow)
    assert ev_fast == ev_slow and ev_fast["tile_reads"] > 0


@pytest.mark.parametrize("C,rows,geom", [(12, 16, dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1))),
                                         (5, 7, dict(kernel=(3, 2), stride=(2, 1), padding=(2, 0), dilation=(2, 1))),
                                         (3, 64, dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1))),
                                         (9, 9, dict(kernel=(1, 3), stride=(1, 2), padding=(0, 1), dilation=(1, 1)))])
def test_conv_tile_counts_equal_the_unfolded_patches_summed_per_row_tile(C, rows, geom):
    """The counting stage's per-tile nonzero counts of a convolution, built from channel
    sums without unfolding, equal the unfolded patches (F.unfold's (c, i, j) row order)
    cut into tiles of ``rows`` rows and summed."""
    from imcsim.tiles.counting import conv_tile_counts

    g = torch.Generator().manual_seed(C + rows)
    nz = (torch.rand(3, C, 7, 9, generator=g) < 0.3).float()
    counts = conv_tile_counts(nz, rows, geom["kernel"], geom["stride"], geom["padding"], geom["dilation"])
    patches = F.unfold(nz, geom["kernel"], dilation=geom["dilation"], padding=geom["padding"], stride=geom["stride"])
    K, L = patches.shape[1], patches.shape[2]
    Tr = -(-K // rows)
    ref = F.pad(patches, (0, 0, 0, Tr * rows - K)).view(3, Tr, rows, L).sum(2)
    assert torch.equal(counts.reshape(3, Tr, L), ref)


def test_calibration_on_silent_layers_falls_back_with_a_warning():
    """An untrained network whose later layers never see input: calibration warns and uses
    the fixed ADC range / an input range of [0, 1] instead of failing the study."""
    import warnings

    from imcsim.errors import CalibrationWarning

    lin = nn.Linear(6, 4)
    hw = HardwareConfig.preset("rram")
    layer = CrossbarLinear(lin, hw, InputSpec("analog", 8, None), name="fc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calibrate(layer, torch.zeros(5, 6))
    msgs = [str(w.message) for w in caught if issubclass(w.category, CalibrationWarning)]
    assert any("'fc' saw no positive inputs" in m and "[0, 1]" in m for m in msgs)
    assert any("'fc' saw no column current" in m and "fixed worst-case range" in m for m in msgs)
    assert layer.tiles.input_spec.scale == 1.0 / 255
    assert layer.tiles.adc_full_scale == hw.adc.full_scale_fraction * layer.tiles.max_column_current()
    with torch.no_grad():
        assert torch.isfinite(layer(torch.rand(3, 6))).all()


@pytest.mark.parametrize("k,s,p,d", [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 2), (2, 1), (0, 2), (1, 2)),
                                     ((1, 1), (2, 2), (0, 0), (1, 1)), ((5, 5), (3, 2), (2, 1), (2, 1))])
def test_patch_rows_are_the_transposed_unfold(k, s, p, d):
    from imcsim.crossbar import patch_rows

    x = torch.randn(3, 4, 11, 9)
    ref = F.unfold(x, k, dilation=d, padding=p, stride=s).transpose(1, 2).reshape(-1, 4 * k[0] * k[1])
    assert torch.equal(patch_rows(x, k, s, p, d), ref)
    # the conv layer unfolds its encoded integer inputs as bytes (or int16) and reads them as float32
    from imcsim.crossbar import _narrow_int

    for max_int, dtype in [(1, torch.uint8), (255, torch.uint8), (1023, torch.int16), (65535, torch.float32)]:
        xi = torch.randint(0, max_int + 1, (3, 4, 11, 9)).float()
        ref = F.unfold(xi, k, dilation=d, padding=p, stride=s).transpose(1, 2).reshape(-1, 4 * k[0] * k[1])
        narrow = _narrow_int(xi, max_int)
        assert narrow.dtype == dtype
        assert torch.equal(patch_rows(narrow, k, s, p, d).to(torch.float32), ref)


def test_cpu_square_root_of_read_noise_variances_is_correctly_rounded():
    """tiles.readout.sqrt_ goes through NumPy on the CPU (torch's CPU kernel is slow on zeros
    and off by one unit in the last place on some float32 values): every value is the
    correctly rounded square root -- float32 against the float64 root rounded once (exact
    for float32), float64 against Python's math.sqrt -- in place, on zeros and strided views."""
    import math

    from imcsim.tiles.readout import sqrt_

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        v = torch.rand(300, 70, generator=g, dtype=dtype) * (torch.rand(300, 70, generator=g) < 0.5)
        v[0, :5] = torch.tensor([0.0, 1e-40, 1e-30, 4.0, 2.0], dtype=dtype)
        if dtype == torch.float32:
            ref = v.double().sqrt().float()
        else:
            ref = torch.tensor([math.sqrt(t) for t in v.reshape(-1).tolist()], dtype=dtype).view(v.shape)
        for view in (lambda t: t, lambda t: t[:, 3:60:2], lambda t: t.T):
            a = v.clone()
            out = sqrt_(view(a))
            assert out.data_ptr() == view(a).data_ptr()  # in place
            expect = v.clone()
            view(expect).copy_(view(ref))  # the view's values rooted, the rest untouched
            assert torch.equal(a, expect)


def test_a_bad_spike_is_caught_before_unfolding_with_the_same_message():
    hw = HardwareConfig.preset("rram")
    conv = CrossbarConv2d(nn.Conv2d(2, 3, 3, padding=1), hw, InputSpec("spike"), name="c")
    x = (torch.rand(2, 2, 5, 5) < 0.5).float()
    x[1, 1, 4, 4] = 0.5
    with pytest.raises(ValueError, match="binary spikes .* got 0.5"):
        conv(x)


def test_stage_times_split_a_noisy_read_and_stay_off_by_default():
    from imcsim.tiles import stage_times
    from imcsim.tiles import timing

    torch.manual_seed(0)
    lin = nn.Linear(200, 40)
    hw = HardwareConfig.preset("rram").replace(**{"wires.r_row": 0.0, "wires.r_col": 0.0, "wires.r_src": 0.0,
                                                  "wires.r_sink": 0.0})
    layer = CrossbarLinear(lin, hw, InputSpec("spike"), name="l")
    x = (torch.rand(64, 200) < 0.3).float()
    calibrate(layer, x)
    assert timing._totals is None
    with stage_times() as t:
        import time
        t0 = time.perf_counter()
        layer(x)
        total = time.perf_counter() - t0
    from imcsim.tiles import fused

    # the reads' keys, products, noise, ADC and shift-add as one "readout" loop taken from the
    # spikes themselves where numba compiles it, as five stages otherwise
    for name in ("encode",) + (("readout",) if fused.kernels() else ("noise", "matmul", "adc", "shift_add")):
        assert t[name] > 0, name
    if fused.kernels():
        assert t["matmul"] == 0.0 and t["noise"] == 0.0
    assert sum(t.values()) <= total
    assert timing._totals is None  # off again after the block
    with pytest.raises(RuntimeError, match="already collecting"):
        with stage_times(), stage_times():
            pass
