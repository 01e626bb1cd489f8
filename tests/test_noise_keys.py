"""Keyed read noise: the distribution, and independence of batch size, batch composition,
chunking, early exits and the repetition shortcut (issue: batch-independent reproducible noise)."""

import pytest
import scipy.stats as st
import torch

import imcsim
from crossbar_models.noise import NORMAL_TABLE, element_offsets, fold_key, hash32, keyed_normal, keyed_uniform
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


# ------------------------------------------------------------------ the read-noise stream
from crossbar_models.noise import STREAM_BITS, keyed_stream_normal, normal_stream, normal_table  # noqa: E402
from imcsim.crossbar import InputSpec, TiledMatrix  # noqa: E402


def test_the_stream_holds_every_quantile_equally_often():
    n = 1 << STREAM_BITS
    s = normal_stream(dtype=torch.float64)
    assert s.shape == (n + 65536,) and torch.equal(s[n:], s[:65536])
    assert torch.equal(s[:n].sort().values, normal_table(dtype=torch.float64).repeat_interleave(n // 65536))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_stream_is_the_hashed_order_of_the_quantiles(dtype):
    """The stream's order is its definition (every read-noise number depends on it):
    position k holds quantile i mod 65536, where hash32(i ^ 0x2545F491) is the k-th smallest
    of the n hashes of i = 0..n-1, built here the plain way -- a stable sort of the int64 hashes, the float64 table, then
    rounded once to ``dtype`` -- against the library's leaner construction."""
    n = 1 << STREAM_BITS
    h = hash32(torch.arange(n, dtype=torch.int64) ^ 0x2545F491)
    assert torch.unique(h).numel() == n  # a bijection: no ties, so the order is unique
    order = torch.sort(h, stable=True).indices
    ref = normal_table(dtype=torch.float64)[order % 65536].to(dtype)
    s = normal_stream(dtype=dtype)
    assert s.dtype == dtype and torch.equal(s[:n], ref) and torch.equal(s[n:], ref[:65536])


def test_stream_draws_are_standard_normal_and_uncorrelated():
    keys = hash32(fold_key(7, torch.arange(4096)))  # 4096 reads x 512 columns: 2.1e6 draws
    e = keyed_stream_normal(keys, 512).double()
    assert e.shape == (4096, 512)
    assert abs(e.mean().item()) < 5 / e.numel() ** 0.5
    assert e.var().item() == pytest.approx(1.0, abs=5 * (2 / e.numel()) ** 0.5)
    assert (e**4).mean().item() == pytest.approx(3.0, abs=0.03)
    assert st.kstest(e.reshape(-1)[::7].numpy(), "norm").pvalue > 1e-3
    for a, b in ((e[:, :-1], e[:, 1:]), (e[:-1], e[1:]), (e[:, :256], e[:, 256:])):  # neighbours, reads, far columns
        r = torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1].item()
        assert abs(r) < 5 / a.numel() ** 0.5
    # per column over reads: mean 0, variance 1 for every column
    col_mean, col_var = e.mean(0), e.var(0)
    assert col_mean.abs().max().item() < 5.5 / 4096**0.5
    assert (col_var - 1).abs().max().item() < 5.5 * (2 / 4096) ** 0.5
    # a pure function of the key: any subset of reads, in any order, gets the same rows
    idx = torch.tensor([4095, 3, 1000])
    assert torch.equal(keyed_stream_normal(keys[idx], 512), e[idx].float())
    # reads longer than one window take further windows from re-hashed positions
    long = keyed_stream_normal(keys[:64], 70000)
    assert torch.equal(long[:, :512], e[:64].float())
    assert abs(long.double().var().item() - 1) < 0.02 and not torch.equal(long[:, 65536:65600], long[:, :64])


def _noisy_layer(draws: str) -> TiledMatrix:
    torch.manual_seed(3)
    w = torch.randn(48, 100)  # two row tiles of 64 rows, 4-bit weights on 2-bit cells: 4 columns per weight
    hw = imcsim.HardwareConfig.preset("ideal").replace(
        **{"rows": 64, "cols": 64, "device.read_noise": 0.05, "device.bits_per_cell": 2, "read_noise_draws": draws})
    return TiledMatrix(w, hw, InputSpec(), seed=11, name="probe")


@pytest.mark.parametrize("draws", ["stream", "element"])
def test_read_noise_per_output_matches_its_definition(draws):
    """Each output of a noisy lossless read is the exact integer product plus zero-mean noise
    of variance sigma^2 * sum_k cw_k^2 * sum_i x_i G_ik^2 (column currents, shift-added):
    checked per output over 24,576 reads x 48 outputs = 1.2e6 draws, against the matrices of
    the layer itself."""
    layer = _noisy_layer(draws)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(1, 100, generator=g) < 0.5).float()
    V = 24576
    keys = torch.arange(V, dtype=torch.int64) * 7919
    y = layer.integer_product(x.expand(V, 100), keys)
    exact = layer.digital_product_int(x)[0]
    # the definition, from the programmed matrices: per column tile-read variance, shift-added
    Xt = layer._tile_view(x)[0, 0]  # (Tr, R)
    var_cols = torch.einsum("tr,trk->k", Xt.double(), layer.G_sq.double())  # summed over row tiles
    cw2 = layer._col_weights**2
    K = cw2.numel()
    var = (var_cols.view(K, -1) * cw2.view(K, 1)).sum(0) * 0.05**2
    n = V
    assert ((y.mean(0) - exact).abs() / (var / n).sqrt()).max().item() < 5.0
    rel = y.var(0) / var - 1
    assert rel.abs().max().item() < 5.5 * (2 / n) ** 0.5
    # batch size and chunking do not change a single bit
    assert torch.equal(layer.integer_product(x.expand(1000, 100), keys[5000:6000]), y[5000:6000])
    import imcsim.crossbar as cb
    old = cb._CHUNK_ELEMENTS
    try:
        cb._CHUNK_ELEMENTS = 4096
        assert torch.equal(layer.integer_product(x.expand(300, 100), keys[:300]), y[:300])
    finally:
        cb._CHUNK_ELEMENTS = old


def test_the_two_draw_modes_differ_only_in_the_draws():
    a, b = _noisy_layer("stream"), _noisy_layer("element")
    assert torch.equal(a.G, b.G)
    x = torch.ones(2000, 100)
    keys = torch.arange(2000)
    ya, yb = a.integer_product(x, keys), b.integer_product(x, keys)
    assert not torch.equal(ya, yb)
    assert ya.mean(0).sub(yb.mean(0)).abs().max().item() < 5 * (2 * ya.var(0).max().item() / 2000) ** 0.5


def test_chunked_reads_share_one_buffer_and_keep_every_bit(monkeypatch):
    """Bit-serial inputs read in repeated steps (a direct-encoded first layer) with read
    noise and an ADC, in many chunks whose column currents share one buffer: the same bits
    as one chunk, and the buffer is what the products are written into."""
    import imcsim.crossbar as cb
    from imcsim.tiles import fused

    torch.manual_seed(4)
    hw = imcsim.HardwareConfig.preset("rram").replace(rows=16, cols=16)
    layer = TiledMatrix(torch.randn(24, 40), hw, InputSpec("quantized", 4, 0.25), seed=2, name="probe")
    layer.adc_full_scale = 6.0
    x = torch.randint(0, 16, (300, 40)).float()
    keys = torch.arange(3 * 300, dtype=torch.int64) * 31
    whole = layer.forward_int(x, 1.0, keys, repeat=3)
    seen = []
    products = fused.row_products

    def spy(X, t, mats, square=False, work=None):
        out = products(X, t, mats, square, work)
        seen.append(out is not None and work is not None and out.data_ptr() == work.data_ptr())
        return out

    monkeypatch.setattr(fused, "row_products", spy)
    monkeypatch.setattr(cb, "_CHUNK_ELEMENTS", 2048)
    chunked = layer.forward_int(x, 1.0, keys, repeat=3)
    assert len(seen) > 3 and all(seen)  # every chunk's products went into the shared buffer
    assert torch.equal(chunked, whole)
