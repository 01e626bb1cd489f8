"""Training: losses, activity regularisation, noise-aware training, checkpoints, encodings."""

import pytest
import torch

import imcsim
from imcsim.datasets import load_digits
from imcsim.errors import ConfigError
from imcsim.training import TrainConfig, accuracy, load_checkpoint, save_checkpoint, sequence_loss, train


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _net(kind="snn", seed=0, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return imcsim.mlp(in_shape=(1, 8, 8), hidden=(64,), kind=kind, timesteps=4, **kw)


def test_losses_by_hand():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]]])  # T=2, B=1, K=2
    y = torch.tensor([0])
    ce = torch.nn.functional.cross_entropy
    assert sequence_loss(logits, y, "mean") == pytest.approx(ce(torch.tensor([[1.0, 1.0]]), y).item())
    per = (ce(logits[0], y) + ce(logits[1], y)) / 2
    assert sequence_loss(logits, y, "per_timestep") == pytest.approx(per.item())
    cum = (ce(logits[0], y) + ce(torch.tensor([[1.0, 1.0]]), y)) / 2
    assert sequence_loss(logits, y, "per_timestep_cumulative") == pytest.approx(cum.item())


def test_snn_and_qnn_learn_and_same_seed_same_weights(digits):
    for kind in ("snn", "qnn"):
        a, b = _net(kind), _net(kind)
        cfg = TrainConfig(epochs=3, seed=5)
        train(a, digits.x_train, digits.y_train, cfg, progress=False)
        train(b, digits.x_train, digits.y_train, cfg, progress=False)
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), k
        assert accuracy(a, digits.x_test, digits.y_test) > 80


def test_activity_regularisation_lowers_spike_rate(digits):
    rates = []
    for lam in (0.0, 10.0):
        net = _net()
        train(net, digits.x_train, digits.y_train, TrainConfig(epochs=4, activity_lambda=lam), progress=False)
        imcsim.reset_events(net)
        with torch.no_grad():
            net(digits.x_test)
        ev = imcsim.collect_events(net)
        n = [v for v in ev.values() if "spikes" in v][0]
        rates.append(n["spikes"] / n["updates"])
    assert rates[1] < 0.7 * rates[0]


def test_noise_aware_training_perturbs_weights_only_during_the_step(digits):
    net = _net(seed=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train(net, digits.x_train[:64], digits.y_train[:64], TrainConfig(epochs=1, lr=1e-12, weight_noise=0.5), progress=False)
    w0, w1 = before["body.1.weight"], net.state_dict()["body.1.weight"]
    assert torch.allclose(w0, w1, atol=1e-6)  # noise applied for the step only, then removed


def test_checkpoint_round_trip(tmp_path, digits):
    net = _net()
    train(net, digits.x_train, digits.y_train, TrainConfig(epochs=1), progress=False)
    save_checkpoint(tmp_path / "m.pt", net, note="x")
    back, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta == {"note": "x"} and back.arch == net.arch
    assert accuracy(back, digits.x_test, digits.y_test) == accuracy(net, digits.x_test, digits.y_test)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="is not a readable imcsim checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_rate_encoding_is_seeded_and_static_input_once_matches(digits):
    net = _net(encoding="rate").eval()
    x = digits.x_test[:16]
    with torch.no_grad():
        a = net(x)
        b = net(x)
        with imcsim.read_context(16, read_seed=1):  # another realisation of the input spikes
            c = net(x)
        with imcsim.read_context(torch.arange(8, 16)):  # samples 8..15 on their own, under their own names
            e8 = net(x[8:16])
        with pytest.raises(ValueError, match="read_context names 16 samples but the input batch holds 8"):
            with imcsim.read_context(16):
                net(x[:8])
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, 8:], e8)  # keyed by sample: the batch around it does not matter
    d = _net().eval()
    once = _net(static_input_once=True).eval()
    once.load_state_dict(d.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(d(x), once(x))
    xo = imcsim.convert(once, imcsim.HardwareConfig.ideal(), calibration=x)
    imcsim.reset_events(xo)
    with torch.no_grad():
        xo(x)
    first = list(imcsim.collect_events(xo).values())[0]
    assert first["vectors"] == 16  # the analog first layer read once per sample, not 4 times


def test_bad_training_config():
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="loss must be one of mean, per_timestep"):
        TrainConfig(loss="hinge")


def test_random_shift_moves_each_image_by_its_drawn_offset():
    from imcsim.training import random_shift
    torch.manual_seed(0)
    x = torch.rand(5, 2, 7, 9)
    out = random_shift(x, 3, 0, torch.Generator().manual_seed(11))
    d = torch.randint(-3, 4, (5, 2), generator=torch.Generator().manual_seed(11))  # the same draws
    for i in range(5):
        dy, dx = int(d[i, 0]), int(d[i, 1])
        for h in range(7):
            for w in range(9):  # pixel by pixel: (h, w) shows (h - dy, w - dx), zero outside
                src_h, src_w = h - dy, w - dx
                want = x[i, :, src_h, src_w] if 0 <= src_h < 7 and 0 <= src_w < 9 else torch.zeros(2)
                assert torch.equal(out[i, :, h, w], want), (i, h, w)
    # samples on axis 1 (T, B, C, H, W): each sample one offset for all its frames
    xs = torch.rand(3, 4, 1, 6, 6)
    ys = random_shift(xs, 2, 1, torch.Generator().manual_seed(4))
    d = torch.randint(-2, 3, (4, 2), generator=torch.Generator().manual_seed(4))
    for i in range(4):
        dy, dx = int(d[i, 0]), int(d[i, 1])
        rolled = torch.roll(xs[:, i], (dy, dx), dims=(-2, -1))
        h = torch.arange(6).view(6, 1) - dy
        w = torch.arange(6).view(1, 6) - dx
        inside = (h >= 0) & (h < 6) & (w >= 0) & (w < 6)  # the source pixel exists
        assert torch.equal(ys[:, i], torch.where(inside, rolled, torch.zeros(())))


def _conv():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return imcsim.convnet(in_shape=(1, 8, 8), channels=(4,), hidden=16, kind="qnn", timesteps=4)


def test_shift_augmentation_is_seeded_and_checks_its_input(digits):
    x = digits.x_train[:128].reshape(-1, 1, 8, 8)
    nets = []
    for _ in range(2):
        net = _conv()
        train(net, x, digits.y_train[:128], TrainConfig(epochs=1, shift=2, seed=1), progress=False)
        nets.append(net.state_dict())
    plain = _conv()
    train(plain, x, digits.y_train[:128], TrainConfig(epochs=1, seed=1), progress=False)
    for k in nets[0]:
        assert torch.equal(nets[0][k], nets[1][k]), k  # same seed, same weights
    assert any(not torch.equal(nets[0][k], v) for k, v in plain.state_dict().items())  # the shift changed training
    with pytest.raises(ConfigError, match="shift must be an integer >= 0"):
        TrainConfig(shift=-1)
    with pytest.raises(ConfigError, match="shift needs image inputs"):
        train(_net(), x.reshape(128, 64), digits.y_train[:128], TrainConfig(epochs=1, shift=1), progress=False)
    with pytest.raises(ConfigError, match=r"smaller than the images \(8x8\)"):
        train(_net(), x, digits.y_train[:128], TrainConfig(epochs=1, shift=8), progress=False)


def test_cli_shift_is_recorded(tmp_path):
    import json
    from imcsim.app.cli import main
    out = tmp_path / "shifted"
    assert main(["train", "--model", "mlp", "--hidden", "16", "--epochs", "1", "--train-limit", "100",
                 "--test-limit", "20", "--shift", "1", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "train.json").read_text())["train"]["shift"] == 1
    assert "images shifted by up to 1 px" in (out / "report.md").read_text()


def test_distill_loss_by_hand_and_it_holds_the_model_to_its_start(digits):
    import math
    from imcsim.training import distill_loss
    s, t = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]), torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    want = 0.0
    for i in range(2):  # KL(p_t || p_s) at temperature 2, times 4, mean over the batch
        ps = [math.exp(v / 2) for v in s[i].tolist()]
        pt = [math.exp(v / 2) for v in t[i].tolist()]
        ps, pt = [v / sum(ps) for v in ps], [v / sum(pt) for v in pt]
        want += sum(b * math.log(b / a) for a, b in zip(ps, pt)) * 4 / 2
    assert distill_loss(s, t).item() == pytest.approx(want, rel=1e-6)
    # trained on shuffled labels, a model taught by its start stays near it; one that is not drifts away
    x, y = digits.x_train[:256], digits.y_train[:256][torch.randperm(256, generator=torch.Generator().manual_seed(0))]
    start = _net("qnn", seed=2).eval()
    with torch.no_grad():
        ref = torch.log_softmax(start(x).mean(0), -1)
    gaps = []
    for w in (0.0, 1.0):
        net = _net("qnn", seed=2)
        train(net, x, y, TrainConfig(epochs=5, lr=1e-2, distill=w), progress=False)
        with torch.no_grad():
            out = torch.log_softmax(net(x).mean(0), -1)
        gaps.append(torch.nn.functional.kl_div(out, ref, log_target=True, reduction="batchmean").item())
    assert gaps[1] < 0.2 * gaps[0], gaps
    with pytest.raises(ConfigError, match=r"distill must be in \[0, 1\]"):
        TrainConfig(distill=1.5)
