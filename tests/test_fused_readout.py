"""The fused read-out pass (imcsim.tiles.fused: read noise + ADC in one numba loop) gives the
same bits as the torch stages it replaces (tiles.readout.add_read_noise + quantize), element
by element and through whole converted networks; without numba the torch stages run."""

import pytest
import torch

import imcsim
from crossbar_models import ADC
from imcsim import models
from imcsim.tiles import fused
from imcsim.tiles.readout import adc_scale, add_read_noise, quantize


@pytest.fixture
def no_numba(monkeypatch):
    """Run as if numba were not installed: every read takes the torch stages."""
    monkeypatch.setattr(fused, "_KERNELS", {})


def _torch_stages(cur, var, keys, sigma, adc):
    y = cur.clone()
    if keys is not None:
        y = add_read_noise(y, var.clone(), keys, sigma, "stream")
    if adc is not None:
        y, _ = quantize(y, adc, codes=True)
    return y


def _cases(g):
    """Reads of awkward shapes and values: ties of the rounding, clamped codes, zero and
    subnormal variances, negative keys (the stream position is the key's low 20 bits)."""
    for shape in [(1, 1), (3, 17, 130), (2, 5, 256), (700, 64)]:
        cur = torch.randn(*shape, generator=g) * 6
        var = torch.rand(*shape, generator=g) * 3
        var.view(-1)[::5] = 0.0
        var.view(-1)[1::11] = 1e-41
        keys = torch.randint(-2**31, 2**31 - 1, shape[:-1], generator=g, dtype=torch.int64).to(torch.int32)
        yield cur, var, keys


def test_fused_readout_is_bit_identical_to_the_torch_stages():
    assert fused.kernels(), "numba is a dependency of imcsim and should load here"
    g = torch.Generator().manual_seed(0)
    n_ties = 0
    for cur0, var, keys in _cases(g):
        for bits, signed in [(4, True), (8, False), (3, True)]:
            adc = ADC(bits=bits, full_scale=2.6, signed=signed)
            cur = cur0.clone()
            ties = cur.view(-1)[::7]
            ties.copy_((torch.randint(-12, 12, ties.shape, generator=g) + 0.5) * adc.lsb)
            scale = adc_scale(adc)
            inv = scale[0]
            for sigma in (0.0, 0.05, 1.3):
                for k, sc in [(keys, scale), (keys, None), (None, scale)]:
                    assert fused.available(cur, k is not None, "stream")
                    ref = _torch_stages(cur, var, k, sigma, adc if sc else None)
                    before = cur.clone()
                    got = fused.readout(cur, var, k, sigma, sc, keep=True)
                    assert torch.equal(cur, before)  # keep: the input is read again later
                    assert torch.equal(got, ref), (cur.shape, bits, sigma, k is None, sc is None)
                    if sc is not None and k is None:
                        n_ties += int((cur * inv - (cur * inv).floor() == 0.5).sum())
                        assert got.min() >= adc.code_min and got.max() <= adc.code_max
            # in place (the default): the result is the input tensor itself
            y = cur.clone()
            out = fused.readout(y, var, keys, 0.05, scale)
            assert out.data_ptr() == y.data_ptr()
            assert torch.equal(out, _torch_stages(cur, var, keys, 0.05, adc))
    assert n_ties > 50  # the cases do exercise rounding ties (half to even, as torch.round)


def test_codes_summed_in_the_fused_pass_equal_the_shift_add_of_the_torch_codes():
    """fused.readout_sum: each read's codes weighted by its row weight (planes) and column
    weights (slices, polarities) and added to its destination row -- against the codes of
    the torch stages summed one read at a time in float64 (integers: exact)."""
    g = torch.Generator().manual_seed(1)
    adc = ADC(bits=4, full_scale=2.6, signed=True)
    scale = adc_scale(adc)
    cw = [1.0, 4.0, -1.0, -4.0]  # 2 slices x 2 polarities
    for n, og in [(1, 3), (500, 16), (64, 128)]:
        cur = torch.randn(n, 4 * og, generator=g) * 4
        var = torch.rand(n, 4 * og, generator=g)
        keys = torch.randint(-2**31, 2**31 - 1, (n,), generator=g, dtype=torch.int64).to(torch.int32)
        dst = torch.randint(0, 7, (n,), generator=g)
        row_w = 2.0 ** torch.randint(0, 8, (n,), generator=g).float()  # bit-plane weights
        for k in (keys, None):
            codes = _torch_stages(cur, var, k, 0.3, adc).double()
            ref = torch.zeros(7, og, dtype=torch.float64)
            for i in range(n):
                ref[dst[i]] += row_w[i].double() * sum(w * codes[i, j * og:(j + 1) * og] for j, w in enumerate(cw))
            acc = torch.full((7, og), 0.0)
            before = cur.clone()
            fused.readout_sum(cur, var, k, 0.3, scale, dst, row_w, cw, acc)
            assert torch.equal(cur, before)  # the currents are left for the next step's reads
            assert torch.equal(acc.double(), ref)
            assert acc.abs().sum() > 0


def test_compiled_read_keys_equal_read_keys():
    """fused.row_keys (one numba loop) gives the int32 keys of tiles.readout.read_keys, for a
    grid of (tile) x (plane, vector) reads and for listed reads, negative offsets and seeds
    beyond 32 bits included."""
    from imcsim.tiles.readout import read_keys, read_offsets

    g = torch.Generator().manual_seed(2)
    vk = torch.randint(0, 2**32, (37,), generator=g, dtype=torch.int64)
    offs = read_offsets(9 * 4).view(9, 4)  # 9 tiles x 4 planes, int64, some negative
    assert (offs < 0).any()
    for seed in (0, 7, 2**33 + 5, -3):
        t = torch.tensor([0, 3, 8, 3])
        p = torch.randint(0, 4, (50,), generator=g)
        v = torch.randint(0, 37, (50,), generator=g)
        got = fused.row_keys(vk, offs, seed, t, p, v, paired=False)
        assert got.dtype == torch.int32 and torch.equal(got, read_keys(vk[v], offs[t][:, p], seed))
        t = torch.randint(0, 9, (50,), generator=g)
        got = fused.row_keys(vk, offs, seed, t, p, v, paired=True)
        assert torch.equal(got, read_keys(vk[v], offs[t, p], seed))


def test_the_fused_pass_takes_only_what_it_reproduces():
    y = torch.zeros(4, 8)
    assert fused.available(y, True, "stream") and fused.available(y, False, "element")
    assert not fused.available(y, True, "element")  # per-element hashes: the torch stages
    assert not fused.available(y.double(), True, "stream")  # float64 reads
    assert not fused.available(y.requires_grad_(), True, "stream")  # training through the chip
    assert not fused.available(torch.zeros(2, 70_000), True, "stream")  # longer than one stream window


def _outputs(nets, x, presets):
    out = {}
    for n, net in nets.items():
        for p in presets:
            hw = imcsim.HardwareConfig.preset(p)
            chip = imcsim.convert(net, hw, calibration=x[n], seed=4)  # calibration: noisy reads observed
            with torch.no_grad():
                out[n, p] = chip(x[n])
            out[n, p, "ranges"] = [m.lsb for m in chip.modules() if hasattr(m, "lsb")]
    return out


@pytest.fixture(scope="module")
def small_nets():
    torch.manual_seed(0)
    nets = {"snn": models.convnet(in_shape=(1, 12, 12), channels=(6, 8), num_classes=10, kind="snn",
                                  timesteps=3).eval(),
            "qnn": models.mlp(in_shape=(150,), hidden=(90,), num_classes=10, kind="qnn", timesteps=2).eval()}
    with torch.no_grad():  # untrained weights, scaled up so that every layer spikes
        for w in nets["snn"].parameters():
            w.mul_(4.0)
    x = {"snn": torch.rand(6, 1, 12, 12), "qnn": torch.rand(6, 150)}
    return nets, x


def test_networks_give_the_same_bits_with_and_without_numba(small_nets, monkeypatch):
    nets, x = small_nets
    presets = ["rram", "rram-ideal", "pcm"]
    with_numba = _outputs(nets, x, presets)
    monkeypatch.setattr(fused, "_KERNELS", {})
    without = _outputs(nets, x, presets)
    for key, val in with_numba.items():
        if isinstance(val, list):
            assert val == without[key], key
        else:
            assert torch.equal(val, without[key]), key
    for n in nets:  # the noise is on, and reaches the outputs
        assert not torch.equal(with_numba[n, "rram"], with_numba[n, "rram-ideal"]), n


def _observer_state(o):
    return o.count, o.max, o.range, o.histogram.clone()


def test_compiled_calibration_observer_counts_what_update_counts():
    """fused.observe (two compiled passes) against RangeObserver.update of the masked reads:
    the same count, maximum, range and every bin, over batches whose range doubles, all-zero
    batches, values on bin edges and past the last bin, masks and float64."""
    from crossbar_models import RangeObserver

    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        a, b = RangeObserver(bins=1 << 10), RangeObserver(bins=1 << 10)
        for scale, shape in [(0.3, (4, 9, 16)), (0.0, (3, 5)), (5.0, (2, 40, 64)), (1.0, (7, 33)), (300.0, (1, 8))]:
            Y = (torch.randn(*shape, generator=g) * scale).to(dtype)
            Y.view(-1)[::13] = 0.0
            if scale:
                Y.view(-1)[1::17] = 2.0 ** int(torch.randint(-3, 3, (1,), generator=g))  # powers of two: bin edges
            for mask in (None, torch.rand(shape[:-1], generator=g) < 0.4):
                assert fused.observe(a, Y, mask)
                b.update(Y[mask] if mask is not None else Y)
                ca, cb = _observer_state(a), _observer_state(b)
                assert ca[:3] == cb[:3] and torch.equal(ca[3], cb[3])
        assert a.full_scale(99.9) == b.full_scale(99.9)
    with pytest.raises(ValueError, match="finite"):
        fused.observe(RangeObserver(), torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="finite"):
        fused.observe(RangeObserver(), torch.tensor([[float("inf"), 1.0]]))
    assert not fused.observe(RangeObserver(), torch.ones(2, 2, dtype=torch.float16))  # left to update
    empty = RangeObserver()
    for Y, mask in [(torch.ones(3, 0), None), (torch.ones(0, 4), None), (torch.ones(2, 4), torch.zeros(2, dtype=torch.bool))]:
        assert fused.observe(empty, Y, mask)  # nothing to add, as update of an empty tensor
    assert empty.count == 0 and empty.max == 0.0 and not empty.histogram.any()


def _sequential_products(X, t, mats):
    """Reference for fused.row_products: float32 sums in row order, one rounding per product
    and per addition (NumPy float32 scalars), zero inputs skipped."""
    import numpy as np

    Xn, tn, Mn = X.numpy(), t.numpy(), mats.numpy()
    out = np.zeros((Mn.shape[0], Xn.shape[0], Mn.shape[-1]), np.float32)
    for a in range(Xn.shape[0]):
        for r in range(Xn.shape[1]):
            x = np.float32(Xn[a, r])
            if x != 0:
                out[0, a] = out[0, a] + x * Mn[0, tn[a], r]
                if Mn.shape[0] > 1:
                    out[1, a] = out[1, a] + (x * x) * Mn[1, tn[a], r]
    return torch.from_numpy(out)


@pytest.mark.parametrize("cols", [37, 64, 150])
def test_row_products_add_the_driven_rows_in_row_order(cols):
    """The compiled read product (only the rows a read drives, in row order) against an
    element-by-element float32 reference: equal bits, for 0/1 reads (spikes, bit planes),
    all-zero reads and other levels; a read's result does not depend on the reads beside it
    (any order or subset); near the float64 product; None where it cannot run. Widths that
    take every path of the sums: 64 columns in vector registers, 16, and the last few."""
    assert fused.kernels()
    g = torch.Generator().manual_seed(11)
    mats = torch.rand(2, 5, 23, cols, generator=g) * 3
    mats[:, :, 4] = 0.0
    X = (torch.rand(60, 23, generator=g) < 0.2).float()
    X[7] = 0.0
    X[9] = 1.0
    t = torch.randint(0, 5, (60,), generator=g)
    got = fused.row_products(X, t, mats)
    assert torch.equal(got, _sequential_products(X, t, mats))
    assert torch.equal(got[:, 7], torch.zeros(2, cols))
    exact = torch.einsum("ar,marc->mac", X.double(), mats[:, t].double())
    assert float((got.double() - exact).abs().max() / exact.abs().max()) < 23 * 2**-24
    perm = torch.randperm(60, generator=g)[:25]
    assert torch.equal(fused.row_products(X[perm], t[perm], mats), got[:, perm])
    levels = X * torch.randint(1, 9, X.shape, generator=g) / 4  # DAC-like levels: x and x**2 weights
    assert torch.equal(fused.row_products(levels, t, mats), _sequential_products(levels, t, mats))
    assert torch.equal(fused.row_products(X, t, mats[:1]), got[:1])  # no read noise: currents only
    assert fused.row_products(X.double(), t, mats.double()) is None
    assert fused.row_products(X.requires_grad_(), t, mats) is None


def test_products_and_codes_in_one_loop_equal_the_two_steps():
    """fused.products_readout_sum (each read's currents kept in a scratch row) against
    row_products followed by readout_sum: equal sums, with and without read noise, for
    undriven reads (skipped: their codes are 0), repeated destination rows and plane weights;
    read noise without the squared conductances is refused."""
    g = torch.Generator().manual_seed(3)
    adc = ADC(bits=4, full_scale=9.0, signed=True)
    scale = adc_scale(adc)
    cw = [1.0, 4.0, -1.0, -4.0]
    og, n, R = 12, 300, 40
    mats = torch.rand(2, 6, R, 4 * og, generator=g) * 0.6
    X = (torch.rand(n, R, generator=g) < 0.15).float()
    X[::7] = 0.0
    t = torch.randint(0, 6, (n,), generator=g)
    dst = torch.randint(0, 9, (n,), generator=g)
    row_w = 2.0 ** torch.randint(0, 8, (n,), generator=g).float()
    keys = torch.randint(-2**31, 2**31 - 1, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    for k in (keys, None):
        Y = fused.row_products(X, t, mats)
        two = torch.zeros(9, og)
        fused.readout_sum(Y[0], Y[1] if k is not None else None, k, 0.3, scale, dst, row_w, cw, two)
        one = torch.zeros(9, og)
        assert fused.products_readout_sum(X, t, mats if k is not None else mats[:1], k, 0.3, scale, dst, row_w, cw,
                                          one)
        assert torch.equal(one, two) and two.abs().sum() > 0
    with pytest.raises(ValueError, match="read noise needs the variances"):
        fused.products_readout_sum(X, t, mats[:1], keys, 0.3, scale, dst, row_w, cw, torch.zeros(9, og))
    assert not fused.products_readout_sum(X.double(), t, mats.double(), keys, 0.3, scale, dst, row_w, cw,
                                          torch.zeros(9, og))


@pytest.mark.parametrize("cols", [24, 148])
def test_variances_from_the_conductances_squares_equal_stored_squares(cols):
    """``square=True`` (mats holds the conductances only; each read squares them in float32)
    gives the bits of a second matrix holding those squares, in both compiled products."""
    g = torch.Generator().manual_seed(5)
    G = torch.rand(1, 4, 30, cols, generator=g) * 2
    stored = torch.cat([G, G * G])
    X = (torch.rand(50, 30, generator=g) < 0.3).float()
    X[3] = 0.0
    t = torch.randint(0, 4, (50,), generator=g)
    got = fused.row_products(X, t, G, square=True)
    assert got.shape == (2, 50, cols)
    assert torch.equal(got, fused.row_products(X, t, stored))
    assert torch.equal(got, _sequential_products(X, t, stored))
    levels = X * torch.randint(1, 5, X.shape, generator=g) / 4  # x**2 * g**2 for other levels too
    assert torch.equal(fused.row_products(levels, t, G, square=True), _sequential_products(levels, t, stored))
    scale = adc_scale(ADC(bits=5, full_scale=11.0, signed=True))
    keys = torch.randint(-2**31, 2**31 - 1, (50,), generator=g, dtype=torch.int64).to(torch.int32)
    dst, row_w, cw = torch.randint(0, 7, (50,), generator=g), torch.ones(50), [1.0, 2.0, -1.0, -2.0]
    a, b = torch.zeros(7, cols // 4), torch.zeros(7, cols // 4)
    assert fused.products_readout_sum(X, t, G, keys, 0.2, scale, dst, row_w, cw, a, square=True)
    assert fused.products_readout_sum(X, t, stored, keys, 0.2, scale, dst, row_w, cw, b)
    assert torch.equal(a, b) and a.abs().sum() > 0


def _list_of_reads(x_int, bit_serial, planes, groups, mats, square, keys, offsets, seed, sigma, scale, pw, cw, og):
    """Reference for fused.plane_reads_readout_sum: the planes (torch bit operations), the
    row tiles' zero-padded view, the list of reads that drive some row, their keys
    (imcsim.tiles.readout.read_keys) and products_readout_sum of that list."""
    from imcsim.tiles.readout import read_keys

    V, in_g = x_int.shape[0], x_int.shape[1] // groups
    Tr, R = mats.shape[1] // groups, mats.shape[2]
    if bit_serial:
        xi = x_int.to(torch.int32)
        X = torch.stack([((xi >> p) & 1).float() for p in range(planes)])
    else:
        X = x_int.unsqueeze(0)
    X = torch.nn.functional.pad(X.view(planes, V, groups, in_g), (0, Tr * R - in_g)).view(planes, V, groups, Tr, R)
    any_read = X.amax(-1) > 0  # (P, V, G, Tr)
    p, v, gr, t = any_read.nonzero(as_tuple=True)
    tile = gr * Tr + t
    rk = None if keys is None else read_keys(keys.to(torch.int64)[v], offsets[tile, p], seed)
    acc = torch.zeros(V * groups, og)
    full = mats if square or keys is None or mats.shape[0] > 1 else None
    assert fused.products_readout_sum(X[p, v, gr, t].contiguous(), tile, full, rk, sigma, scale, v * groups + gr,
                                      torch.tensor(pw)[p], cw, acc, square=square)
    return acc, any_read, int(X.sum())


@pytest.mark.parametrize("bit_serial,planes,groups,in_g,noise", [
    (True, 3, 1, 150, "square"), (True, 8, 1, 27, "square"), (True, 4, 2, 70, "stored"), (True, 3, 1, 150, None),
    (False, 1, 1, 150, "square"), (False, 1, 3, 40, "square"), (False, 1, 1, 64, None)])
def test_reads_taken_from_the_inputs_equal_the_list_of_reads(bit_serial, planes, groups, in_g, noise):
    """fused.plane_reads_readout_sum (the planes, row tiles and reads never built) against
    the planes, the tiles' view and the list of active reads: equal sums, equal record of
    which reads drove a row and equal driven-row count -- bit-serial inputs of 3, 4 and 8
    bits, spikes, float32 or uint8 inputs, grouped layers, a short last row tile (150 = 2 x
    64 + 22 rows), read noise from squares or stored variances, none; refused (None) for an
    ADC range without code 0."""
    g = torch.Generator().manual_seed(17 + planes + groups)
    R = 64 if in_g > 64 else in_g
    Tr = -(-in_g // R)
    og, K = 5, 4
    G = torch.rand(1, groups * Tr, R, K * og, generator=g) * 3
    mats = torch.cat([G, G * G + 0.5]) if noise == "stored" else G
    V = 40
    x = torch.randint(0, 2**planes, (V, groups * in_g), generator=g).float()
    x[torch.rand(x.shape, generator=g) < 0.6] = 0.0  # mostly quiet inputs
    x[5] = 0.0  # a vector that drives nothing
    if Tr > 1:
        x[::2, R:2 * R] = 0.0  # the second row tile of every other vector drives nothing
    keys = None if noise is None else torch.randint(-2**31, 2**31 - 1, (V,), generator=g,
                                                     dtype=torch.int64).to(torch.int32)
    offsets = torch.randint(0, 2**40, (groups * Tr, planes), generator=g)
    scale = adc_scale(ADC(bits=6, full_scale=30.0, signed=False))
    pw = [float(2**p) for p in range(planes)]
    cw = [1.0, 4.0, -1.0, -4.0]
    square = noise == "square"
    acc = torch.zeros(V * groups, og)
    got = fused.plane_reads_readout_sum(x, bit_serial, planes, groups, mats, square, keys, offsets, 99, 0.3, scale,
                                        pw, cw, acc)
    assert got is not None
    ref, any_ref, active_ref = _list_of_reads(x, bit_serial, planes, groups, mats, square, keys, offsets, 99, 0.3,
                                              scale, pw, cw, og)
    assert torch.equal(acc, ref) and acc.abs().sum() > 0
    assert torch.equal(got[0], any_ref) and got[1] == active_ref
    acc8 = torch.zeros(V * groups, og)  # uint8 inputs (a convolution's unfolded patches) read as they are
    got8 = fused.plane_reads_readout_sum(x.to(torch.uint8), bit_serial, planes, groups, mats, square, keys, offsets,
                                         99, 0.3, scale, pw, cw, acc8)
    assert torch.equal(acc8, acc) and torch.equal(got8[0], got[0]) and got8[1] == got[1]
    assert not got[0][:, 5].any() and not acc.view(V, groups, og)[5].any()
    lo_scale = (scale[0], 1.0, scale[2])  # codes 1..hi: an undriven read would convert to 1, not 0
    assert fused.plane_reads_readout_sum(x, bit_serial, planes, groups, mats, square, keys, offsets, 99, 0.3,
                                         lo_scale, pw, cw, torch.zeros(V * groups, og)) is None
    if keys is not None:
        with pytest.raises(ValueError, match="read noise needs the variances"):
            fused.plane_reads_readout_sum(x, bit_serial, planes, groups, G, False, keys, offsets, 99, 0.3, scale,
                                          pw, cw, acc)


def test_graded_and_unit_inputs_in_one_call_of_the_plane_loop():
    """Inputs of 1 take the sums without multiplications (1 * g is g exactly); a read with
    any other level takes the products. Vectors of both kinds in one call: the same sums as
    the list of reads, whose products are checked element by element above."""
    g = torch.Generator().manual_seed(29)
    R, in_g, og, V = 64, 150, 5, 30
    G = torch.rand(1, 3, R, 4 * og, generator=g) * 3
    x = (torch.rand(V, in_g, generator=g) < 0.3).float()
    x[::3] *= torch.randint(1, 4, (in_g,), generator=g).float()  # every third vector graded (1..3)
    keys = torch.randint(-2**31, 2**31 - 1, (V,), generator=g, dtype=torch.int64).to(torch.int32)
    offsets = torch.randint(0, 2**40, (3, 1), generator=g)
    scale = adc_scale(ADC(bits=6, full_scale=40.0, signed=False))
    cw = [1.0, 4.0, -1.0, -4.0]
    for k in (keys, None):
        acc = torch.zeros(V, og)
        got = fused.plane_reads_readout_sum(x, False, 1, 1, G, True, k, offsets, 7, 0.3, scale, [1.0], cw, acc)
        ref, any_ref, active_ref = _list_of_reads(x, False, 1, 1, G, True, k, offsets, 7, 0.3, scale, [1.0], cw, og)
        assert torch.equal(acc, ref) and acc.abs().sum() > 0
        assert torch.equal(got[0], any_ref) and got[1] == int((x != 0).sum())


def test_dac_reads_square_the_conductances_once_and_match_without_numba(small_nets, monkeypatch):
    """DAC levels are multiplied in torch: a per-column `rram` chip keeps its conductances
    only and squares them once for those products (kept until it is reprogrammed); the
    outputs are the same on a second call and without numba."""
    nets, x = small_nets
    hw = imcsim.HardwareConfig.preset("rram").replace(**{"inputs.mode": "dac"})
    chip = imcsim.convert(nets["qnn"], hw, calibration=x["qnn"], seed=4)
    with torch.no_grad():
        y = chip(x["qnn"])
        tiles = [m for m in chip.modules() if hasattr(m, "_sq_cache") and m._sq_cache is not None]
        assert tiles
        for t in tiles:
            assert t.mats.shape[0] == 1 and torch.equal(t._sq_cache[1], t.G * t.G)
        cached = [t._sq_cache[1] for t in tiles]
        assert torch.equal(chip(x["qnn"]), y)
        assert all(t._sq_cache[1] is c for t, c in zip(tiles, cached))  # squared once
        monkeypatch.setattr(fused, "_KERNELS", {})
        assert torch.equal(chip(x["qnn"]), y)
        other = imcsim.reprogram(chip, 7, calibration=x["qnn"])  # another instance: its own squares
        other(x["qnn"])
        tiles2 = [m for m in other.modules() if hasattr(m, "_sq_cache")]
        assert len(tiles2) == len(tiles)
        assert all(torch.equal(t._sq_cache[1], t.G * t.G) and not torch.equal(t._sq_cache[1], c)
                   for t, c in zip(tiles2, cached))


def test_byte_matrices_only_for_small_integer_levels():
    """fused.byte_matrices: uint8 levels where every conductance is a non-negative integer
    and rows x the largest level stays <= 255 (so no column sum can wrap); None for
    programmed (non-integer) conductances, negative entries (column-pair differences) and
    sums that could pass 255."""
    levels = torch.randint(0, 4, (1, 3, 64, 20)).float()
    b = fused.byte_matrices(levels)
    assert b.dtype == torch.uint8 and torch.equal(b.float(), levels)
    assert fused.byte_matrices(levels + 0.25) is None
    late = levels.clone()
    late[0, 2, 63, 19] = 1.5  # past the first cells: still found
    assert fused.byte_matrices(late) is None
    assert fused.byte_matrices(levels - 1) is None
    assert fused.byte_matrices(levels * 2) is None  # 64 rows x 6 = 384 > 255
    assert fused.byte_matrices(torch.cat([levels, levels])) is not None  # a second matrix (variances) is ignored
    big = torch.randint(0, 4, (1, 5, 64, 4096)).float()  # checked a piece of 2**20 cells at a time: past the first
    assert torch.equal(fused.byte_matrices(big).float(), big)
    big[0, 4, 63, 4095] = 2.5
    assert fused.byte_matrices(big) is None
    big[0, 4, 63, 4095] = float("nan")
    assert fused.byte_matrices(big) is None


@pytest.mark.parametrize("bit_serial,planes,cols", [(True, 3, 300), (True, 8, 130), (False, 1, 256)])
def test_noise_free_reads_in_bytes_equal_the_float32_sums(bit_serial, planes, cols):
    """Noise-free reads of an ideal array's integer levels summed in bytes (256 and 64
    columns per vector pass, then the last few) give the codes of the float32 sums, bit for
    bit, with the same record of reads; a column sum of 255 (every row of a 51-row tile
    driven at level 5) is exact; spikes with other levels (counts) take the float32 sums."""
    g = torch.Generator().manual_seed(41 + planes)
    R, in_g, V = 51, 120, 36
    Tr = -(-in_g // R)
    levels = torch.randint(0, 6, (1, Tr, R, cols), generator=g).float()
    levels[0, 0, :, 0] = 5.0
    assert fused.byte_matrices(levels) is not None
    x = torch.randint(0, 2**planes, (V, in_g), generator=g).float()
    x[torch.rand(x.shape, generator=g) < 0.5] = 0.0
    x[3, :R] = float(2**planes - 1)  # a vector driving every row of tile 0 in every plane: 255 in column 0
    if not bit_serial:
        x[::4] *= 2.0  # every fourth vector graded: counts, not spikes
    offsets = torch.randint(0, 2**40, (Tr, planes), generator=g)
    scale = adc_scale(ADC(bits=9, full_scale=511.0, signed=False))
    pw, cw = [float(2**p) for p in range(planes)], [1.0, -1.0]
    og = cols // 2
    a, b = torch.zeros(V, og), torch.zeros(V, og)
    got_f = fused.plane_reads_readout_sum(x, bit_serial, planes, 1, levels, False, None, offsets, 5, 0.0, scale, pw,
                                          cw, a)
    got_b = fused.plane_reads_readout_sum(x, bit_serial, planes, 1, levels, False, None, offsets, 5, 0.0, scale, pw,
                                          cw, b, byte_mats=fused.byte_matrices(levels))
    assert torch.equal(a, b) and a.abs().sum() > 0
    assert torch.equal(got_f[0], got_b[0]) and got_f[1] == got_b[1]
    ref, _, _ = _list_of_reads(x, bit_serial, planes, 1, levels, False, None, offsets, 5, 0.0, scale, pw, cw, og)
    assert torch.equal(b, ref)
    c = torch.zeros(V, og)  # the bytes are what these reads add: other bytes, other sums
    fused.plane_reads_readout_sum(x, bit_serial, planes, 1, levels, False, None, offsets, 5, 0.0, scale, pw, cw, c,
                                  byte_mats=(levels[:1] // 2).to(torch.uint8))
    assert not torch.equal(c, a)
