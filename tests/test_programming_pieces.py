"""Programming a layer in pieces (bounded memory) gives the same bits as programming it
whole: the chunked device draws, the pieces of one array, the in-place wire solve, the
streamed read matrices and the uint8 level matrix, each against the one-pass computation."""

import pytest
import torch
import torch.nn as nn

import crossbar_models.devices as devices
from crossbar_models import DeviceModel, WireModel, effective_conductance
from imcsim import CrossbarLinear, HardwareConfig, InputSpec
from imcsim.mapping import level_matrix, level_matrix_u8
from imcsim.tiles import programming

G_ON, G_OFF = 1e-4, 1e-6


def _device(kind, faults, **kw):
    p = dict(p_stuck_on=0.02, p_stuck_off=0.03) if faults else {}
    return DeviceModel(g_on=G_ON, g_off=G_OFF, bits_per_cell=2, variation=0.1, variation_kind=kind, **p, **kw)


def _targets(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return G_OFF + torch.randint(0, 4, (n,), generator=g).to(torch.float64) * (G_ON - G_OFF) / 3


@pytest.mark.parametrize("kind", ["gaussian", "lognormal", "pcm"])
@pytest.mark.parametrize("faults", [False, True])
@pytest.mark.parametrize("n", [4096 * 3 + 64 * 5, 4096 * 2 + 40, 48])
def test_chunked_draws_equal_one_draw_over_the_whole_array(kind, faults, n, monkeypatch):
    dev = _device(kind, faults)
    target = _targets(n).view(-1, 8) if n % 8 == 0 else _targets(n)
    monkeypatch.setattr(devices, "PROGRAM_CHUNK", 1 << 30)  # one draw over the whole array
    whole = dev.program(target, torch.Generator().manual_seed(3))
    monkeypatch.setattr(devices, "PROGRAM_CHUNK", 128)
    assert len(devices.draw_spans(n)) > 1 or n < 192
    pieces = dev.program(target, torch.Generator().manual_seed(3))
    assert torch.equal(whole, pieces) and not torch.equal(whole, target)
    own = target.clone()
    out = dev.program(own, torch.Generator().manual_seed(3), in_place=True)
    assert out is own and torch.equal(out, whole)


def test_draw_spans_cover_the_array_once_with_no_short_tail(monkeypatch):
    monkeypatch.setattr(devices, "PROGRAM_CHUNK", 128)
    for n in (0, 1, 63, 64, 128, 129, 191, 192, 1000):
        spans = devices.draw_spans(n)
        assert [c for a, b in spans for c in range(a, b)] == list(range(n))
        assert all((b - a) % 128 == 0 for a, b in spans[:-1])
        assert len(spans) <= 1 or spans[-1][1] - spans[-1][0] >= 64


@pytest.mark.parametrize("kind", ["gaussian", "lognormal", "pcm"])
@pytest.mark.parametrize("faults,vary", [(False, True), (True, True), (True, False)])
def test_programming_in_pieces_equals_programming_the_whole_array(kind, faults, vary, monkeypatch):
    monkeypatch.setattr(devices, "PROGRAM_CHUNK", 256)  # several draws inside a piece, too
    dev = _device(kind, faults)
    if not vary:
        dev = DeviceModel(**{**dev.__dict__, "variation": 0.0})
    sizes = [4096, 64, 1024, 192, 2048]
    target = _targets(sum(sizes), seed=1)
    whole = dev.program(target, torch.Generator().manual_seed(9))
    step = dev.program_pieces(target.numel(), torch.Generator().manual_seed(9))
    parts, a = [], 0
    for n in sizes:
        piece = target[a: a + n].clone()
        out = step(piece)
        assert out is piece
        parts.append(out)
        a += n
    assert torch.equal(torch.cat(parts), whole)


def test_programming_in_pieces_refuses_what_it_cannot_do_exactly():
    with pytest.raises(ValueError, match="multiple of 64"):
        _device("gaussian", True).program_pieces(100, torch.Generator())
    drifting = DeviceModel(g_on=G_ON, g_off=G_OFF, variation=0.05, drift="power", time=100.0)
    with pytest.raises(ValueError, match="drifting"):
        drifting.program_pieces(64, torch.Generator())
    step = _device("gaussian", True).program_pieces(128, torch.Generator())
    with pytest.raises(ValueError, match="multiple of 64"):
        step(_targets(100))
    with pytest.raises(ValueError, match="float64"):
        step(_targets(64).float())
    exact = DeviceModel(g_on=G_ON, g_off=G_OFF)
    t = _targets(64)
    assert exact.program_pieces(64, None)(t) is t


def test_in_place_wire_solve_equals_the_copy_and_writes_over_g():
    g = torch.Generator().manual_seed(0)
    G = (G_OFF + torch.rand(5, 8, 8, generator=g, dtype=torch.float64) * G_ON).contiguous()
    wires = WireModel(r_row=2.0, r_col=2.0, r_src=1.0, r_sink=1.0)
    ref = effective_conductance(G, wires, chunk=2)
    own = G.clone()
    out = effective_conductance(own, wires, chunk=2, in_place=True)
    assert torch.equal(out, ref) and out.data_ptr() == own.data_ptr() and not torch.equal(ref, G)


@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_uint8_level_matrix_built_in_pieces_equals_the_level_matrix(mapping):
    hw = HardwareConfig.ideal(mapping=mapping, weight_bits=6, **{"device.bits_per_cell": 2})
    w = torch.randint(-hw.weight_qmax, hw.weight_qmax + 1, (3000, 300)).to(torch.float64)
    assert (1 << 18) // 3000 < 300  # several pieces
    u8 = level_matrix_u8(w, hw)
    assert u8.dtype == torch.uint8 and torch.equal(u8.to(torch.int32), level_matrix(w, hw))


def _whole(layer, hw, nominal=None):
    t = layer.tiles
    M, nom, att = programming.programmed_conductances(t.w_int.to(torch.float64), hw, t.grid, 1, t.seed, nominal)
    return programming.read_matrices(lambda a, b: M[:, a:b], hw, t.grid, 1, t.in_group, 1, att), nom


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("solve", ["exact", "nominal"])
@pytest.mark.parametrize("preset", ["rram", "rram-ideal", "ideal"])
def test_streamed_programming_equals_the_whole_layer_bit_for_bit(preset, solve, step, monkeypatch):
    """program_matrices ``step`` row tiles at a time (forced; 3 does not divide the 7 row
    tiles, the last of which is partly driven; an exact solve tiles each block's levels as it
    goes) against programmed_conductances of the whole layer then read_matrices: every
    matrix and number identical, the nominal array too."""
    hw = HardwareConfig.preset(preset).replace(rows=8, cols=8, wire_solve=solve)
    torch.manual_seed(0)
    layer = CrossbarLinear(nn.Linear(50, 6), hw, InputSpec("spike"), seed=5)
    t = layer.tiles
    assert t.grid.row_tiles > 2
    monkeypatch.setattr(programming, "row_tile_step", lambda grid, groups: step)
    ref, ref_nom = _whole(layer, hw)
    got, nom = programming.program_matrices(t.w_int.to(torch.float64), hw, t.grid, 1, t.seed, t.in_group, 1)
    for field in ("mats", "W_lin", "col_weights"):
        a, b = getattr(ref, field), getattr(got, field)
        assert (a is None and b is None) or torch.equal(a, b), field
    assert (ref.lin_exact32, ref.input_offset, ref.code_bound, ref.g_off_units) == \
        (got.lin_exact32, got.input_offset, got.code_bound, got.g_off_units)
    assert (ref.W_lin is not None) == (preset == "ideal")
    if ref_nom is None:
        assert nom is None
        return
    assert torch.equal(ref_nom.levels, nom.levels) and torch.equal(ref_nom.wire_base, nom.wire_base)
    # a second instance from the kept nominal array, as imcsim.reprogram makes it
    M2, _, _ = programming.programmed_conductances(t.w_int.to(torch.float64), hw, t.grid, 1, 77, ref_nom)
    ref2 = programming.read_matrices(lambda a, b: M2[:, a:b], hw, t.grid, 1, t.in_group, 1)
    got2, nom2 = programming.program_matrices(t.w_int.to(torch.float64), hw, t.grid, 1, 77, t.in_group, 1, nom)
    assert nom2 is nom and torch.equal(ref2.mats, got2.mats) and not torch.equal(got2.mats, got.mats)


@pytest.mark.parametrize("per", ["column", "pair"])
def test_a_noisy_chip_holds_its_conductances_and_only_a_pairs_variances(per):
    """With read noise, a per-column chip keeps one float32 matrix (the variances of a read
    are the float32 squares of its conductances, computed when read); column pairs read by
    one ADC keep G+**2 + G-**2 beside their difference current, which it is not a function
    of. Without read noise, one matrix either way."""
    hw = HardwareConfig.preset("rram").replace(rows=8, cols=8, **{"adc.per": per})
    torch.manual_seed(0)
    t = CrossbarLinear(nn.Linear(20, 6), hw, InputSpec("spike"), seed=5).tiles
    assert t.mats.shape[0] == (2 if per == "pair" else 1) and t.needs_keys
    if per == "column":
        assert torch.equal(t.G_sq, t.G * t.G)
    else:  # the pair's summed squares, from the float64 conductances: not the square of the difference
        assert t.G_sq is t.mats[1] or torch.equal(t.G_sq, t.mats[1])
        assert (t.G_sq >= t.G * t.G * (1 - 1e-6)).all() and not torch.allclose(t.G_sq, t.G * t.G)
    quiet = CrossbarLinear(nn.Linear(20, 6), hw.replace(**{"device.read_noise": 0.0}), InputSpec("spike"), seed=5).tiles
    assert quiet.mats.shape[0] == 1 and quiet.G_sq is None and not quiet.needs_keys


@pytest.mark.parametrize("drift", [False, True])
def test_a_linear_chip_holds_no_conductances_and_draws_the_same_ones_when_asked(drift):
    """A lossless, noise-free chip reads linearly and is installed without its conductance
    matrices (program_matrices(keep_mats=False)); asked for them (a forced per-read path,
    a test, a tool) it draws them again from its seed and read time: the same bits as
    programming them at once, and the per-read path then gives the linear read-out's
    numbers (to float32 rounding). With drift: the matrices of the time the chip is read at (read_at)."""
    hw = HardwareConfig.preset("ideal").replace(rows=8, cols=8, **{"device.variation": 0.05})
    if drift:
        hw = hw.replace(**{"device.drift": "power", "device.time": 100.0})
    torch.manual_seed(0)
    layer = CrossbarLinear(nn.Linear(30, 7), hw, InputSpec("quantized", bits=3), seed=9)
    t = layer.tiles
    assert t.read_path == "linear" and t._mats is None and t.W_lin is not None
    if drift:
        t.read_at(3600.0)
        assert t._mats is None
        hw = hw.replace(**{"device.time": 3600.0})
    want, _ = programming.program_matrices(t.w_int.to(torch.float64), hw, t.grid, 1, t.seed, t.in_group, 7)
    x = torch.randint(0, 8, (11, 30)).float() / 7
    lin = layer(x)
    assert torch.equal(t.mats, want.mats) and t._mats is not None and t.conversion_columns == want.mats.shape[-1]
    t.path = "reads"  # float32 reads of the varied conductances against the float64 linear weights
    assert torch.allclose(layer(x), lin, rtol=1e-5, atol=1e-6)
    none, _ = programming.program_matrices(t.w_int, hw, t.grid, 1, t.seed, t.in_group, 7, keep_mats=False)
    assert none.mats is None and none.mats_shape == tuple(want.mats.shape) and torch.equal(none.W_lin, want.W_lin)
