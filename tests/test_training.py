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
