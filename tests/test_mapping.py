"""Weight mapping: quantisation, slicing, tiling and the exact inverse."""

import itertools

import pytest
import torch

from imcsim.hardware import HardwareConfig
from imcsim.mapping import TileGrid, level_matrix, quantize_weights, reconstruct_weights, tile, untile, weight_levels


def _hw(mapping, bpc, bits):
    return HardwareConfig.ideal(mapping=mapping, weight_bits=bits, **{"device.bits_per_cell": bpc})


def test_quantization_is_symmetric_round_to_nearest_per_channel():
    W = torch.tensor([[0.5, -1.0, 0.26], [0.0, 0.0, 0.0], [3.0, 1.49, -0.2]])
    w_int, scale = quantize_weights(W, 3, "per_channel")  # q = 3
    assert scale.tolist() == pytest.approx([1 / 3, 1.0, 1.0])
    assert w_int.tolist() == [[2.0, -3.0, 1.0], [0.0, 0.0, 0.0], [3.0, 1.0, -0.0]]
    w_l, s_l = quantize_weights(W, 3, "per_layer")
    assert s_l.tolist() == [1.0, 1.0, 1.0]
    assert w_l[0].tolist() == [0.0, -1.0, 0.0]


@pytest.mark.parametrize("granularity", ["per_channel", "per_layer"])
def test_quantization_equals_the_textbook_formula_bit_for_bit(granularity):
    """quantize_weights (max |W| as max(max W, -min W), rounding in place) against
    clamp(round(W / (max|W| / q)), -q, q) written out in float64: the same bits, zero rows
    and rows whose largest magnitude is negative included."""
    g = torch.Generator().manual_seed(4)
    W = torch.randn(37, 53, generator=g, dtype=torch.float32) * torch.rand(37, 1, generator=g) * 3
    W[4] = 0.0
    W[9] = -W[9].abs()  # all negative: the maximum magnitude is -min
    q = 2**5 - 1
    Wd = W.double()
    amax = Wd.abs().amax(dim=1) if granularity == "per_channel" else Wd.abs().amax().expand(37)
    scale = torch.where(amax > 0, amax / q, torch.ones_like(amax))
    want = torch.clamp(torch.round(Wd / scale[:, None]), -q, q)
    w_int, s = quantize_weights(W, 6, granularity)
    assert torch.equal(w_int, want) and torch.equal(s, scale) and w_int.dtype == torch.float64
    assert (w_int[4] == 0).all() and (granularity == "per_layer" or w_int[9].min() == -q)
    # a layer quantised a few rows at a time (2**18 weights: 131 rows of 2000), into int8
    W = torch.randn(300, 2000, generator=g) * torch.rand(300, 1, generator=g)
    W[250] = -W[250].abs() * 9  # the layer's largest magnitude, in the last piece
    Wd = W.double()
    amax = Wd.abs().amax(dim=1) if granularity == "per_channel" else Wd.abs().amax().expand(300)
    scale = torch.where(amax > 0, amax / q, torch.ones_like(amax))
    want = torch.clamp(torch.round(Wd / scale[:, None]), -q, q)
    for dtype in (torch.float64, torch.int8):
        w_int, s = quantize_weights(W, 6, granularity, dtype=dtype)
        assert w_int.dtype == dtype and torch.equal(w_int.double(), want) and torch.equal(s, scale)
    W[299, 5] = float("inf")
    with pytest.raises(ValueError, match=r"weight must be finite, got inf at index \(299, 5\)"):
        quantize_weights(W, 6, granularity)


@pytest.mark.parametrize("mapping, bpc, bits", list(itertools.product(["differential", "offset"], [1, 2, 3, 4], [2, 4, 5, 8])))
def test_round_trip_reconstructs_quantized_weights_exactly(mapping, bpc, bits):
    hw = _hw(mapping, bpc, bits)
    g = torch.Generator().manual_seed(bits * 10 + bpc)
    W = torch.randn(13, 29, generator=g)
    w_int, _ = quantize_weights(W, bits, hw.granularity)
    lv = level_matrix(w_int, hw)
    assert int(lv.min()) >= 0 and int(lv.max()) <= 2**bpc - 1
    assert lv.shape == (29, 13 * hw.columns_per_weight)
    grid = TileGrid(29, lv.shape[1], 8, 12)
    tiles = tile(lv, grid)
    assert tiles.shape == (4, -(-lv.shape[1] // 12), 8, 12)
    assert torch.equal(untile(tiles, grid), lv)
    # padding cells hold level 0 (g_off)
    full = tiles.permute(0, 2, 1, 3).reshape(grid.padded_rows, grid.padded_cols)
    assert int(full[29:].abs().sum()) == 0 and int(full[:, lv.shape[1]:].abs().sum()) == 0
    assert torch.equal(reconstruct_weights(untile(tiles, grid), 13, hw), w_int)


def test_levels_by_hand():
    hw = _hw("differential", 2, 5)  # magnitudes up to 15 -> 4 bits -> 2 slices of 2 bits
    lv = weight_levels(torch.tensor([[13.0, -6.0]]), hw)
    # 13 = 0b1101 -> slices (LSB first) [1, 3]; -6 -> negative polarity 6 = 0b0110 -> [2, 1]
    assert lv[0, 0].tolist() == [[1, 3], [0, 0]]
    assert lv[0, 1].tolist() == [[0, 0], [2, 1]]
    hw_o = _hw("offset", 3, 4)  # q = 7, u = w + 7 in [0, 14] -> 4 bits -> 2 slices of 3 bits
    lv_o = weight_levels(torch.tensor([[-7.0, 0.0, 7.0]]), hw_o)
    assert lv_o[0, :, 0].tolist() == [[0, 0], [7, 0], [6, 1]]


def test_nonfinite_weights_are_refused():
    with pytest.raises(ValueError, match=r"weight must be finite, got nan at index \(1, 0\)"):
        quantize_weights(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), 4, "per_channel")


@pytest.mark.parametrize("mapping, bpc", [("differential", 2), ("offset", 3), ("differential", 1)])
def test_weights_read_back_from_programmed_crossbar(mapping, bpc):
    import torch.nn as nn

    from imcsim import CrossbarLinear, InputSpec

    hw = HardwareConfig.ideal(mapping=mapping, weight_bits=5, rows=8, cols=12, **{"device.bits_per_cell": bpc})
    lin = nn.Linear(19, 7)
    layer = CrossbarLinear(lin, hw, InputSpec("spike"))
    w_back = reconstruct_weights(layer.tiles.programmed_levels(), 7, hw)
    assert torch.equal(w_back, quantize_weights(lin.weight, 5, hw.granularity)[0])
