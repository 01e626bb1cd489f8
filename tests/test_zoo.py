"""The CIFAR-size zoo (VGG9, VGG16, ResNet-19): topology counted by hand, width scaling,
rebuild from the architecture record, SpikeSim's VGG9 layer list, and the CLI from training
through energy on MNIST padded to 3x32x32."""

import gzip
import json
import struct

import numpy as np
import pytest
import torch
import torch.nn as nn

from imcsim.checkpoints import load_checkpoint, save_checkpoint
from imcsim.cost import layer_specs, spikesim_layers
from imcsim.cost.spikesim import VGG9_CIFAR10
from imcsim.errors import ConfigError
from imcsim.models import ZOO, build
from imcsim.neurons import IF, QuantAct


def _params_by_hand(convs, fcs, bn=True):
    """conv: (c_in, c_out, k); fc: (n_in, n_out, bias, bn); BN: 2 parameters per channel."""
    n = sum(ci * co * k * k + (2 * co if bn else 0) for ci, co, k in convs)
    return n + sum(i * o + (o if b else 0) + (2 * o if norm else 0) for i, o, b, norm in fcs)


def test_vgg9_and_vgg16_topologies_counted_by_hand():
    v9 = ZOO["vgg9"]()
    convs = [(3, 64, 3), (64, 64, 3), (64, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3), (256, 256, 3)]
    assert sum(p.numel() for p in v9.parameters()) == _params_by_hand(convs, [(256 * 4 * 4, 1024, False, True),
                                                                             (1024, 10, True, False)])
    assert sum(isinstance(m, nn.MaxPool2d) for m in v9.modules()) == 3
    assert sum(isinstance(m, IF) for m in v9.modules()) == 8  # 7 conv + 1 hidden fc
    v16 = ZOO["vgg16"](num_classes=100)
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = [(ci, co, 3) for ci, co in zip([3] + chans[:-1], chans)]
    assert sum(p.numel() for p in v16.parameters()) == _params_by_hand(convs, [(512, 4096, False, True),
                                                                              (4096, 100, True, False)])
    assert v16(torch.rand(2, 3, 32, 32)).shape == (4, 2, 100)


def test_resnet19_topology_counted_by_hand():
    net = ZOO["resnet19"](kind="qnn")
    convs = [(3, 128, 3)]
    c_in = 128
    for ch, n in ((128, 3), (256, 3), (512, 2)):
        for j in range(n):
            convs += [(c_in, ch, 3), (ch, ch, 3)] + ([(c_in, ch, 1)] if c_in != ch else [])
            c_in = ch
    assert len([c for c in convs if c[2] == 3]) == 17  # the "19": 17 3x3 convolutions + 2 fc
    n_act = 1 + 2 * 8 + 1  # stem, two per block, the hidden fc: each QuantAct learns its clip (1 parameter)
    assert sum(p.numel() for p in net.parameters()) == _params_by_hand(convs, [(512, 256, False, True),
                                                                              (256, 10, True, False)]) + n_act
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == len(convs)
    assert isinstance(net.body.pool, nn.AdaptiveAvgPool2d)
    assert all(m.bits == 3 for m in net.modules() if isinstance(m, QuantAct))  # T = 4 -> 3-bit twin
    assert net(torch.rand(2, 3, 32, 32)).shape == (1, 2, 10)


@pytest.mark.parametrize("name", ["vgg9", "vgg16", "resnet19"])
def test_width_scales_every_layer_and_the_record_rebuilds_it(tmp_path, name):
    full, half = ZOO[name](), ZOO[name](width=0.5)
    w_full = [m.weight.shape for m in full.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    w_half = [m.weight.shape for m in half.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(w_full) == len(w_half)
    for a, b in zip(w_full[:-1], w_half[:-1]):
        assert b[0] * 2 == a[0]  # every output width halves (the classifier keeps its classes)
    torch.manual_seed(0)
    net = ZOO[name](width=0.25, kind="snn", timesteps=2)
    save_checkpoint(tmp_path / "m.pt", net)
    back, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(3, 3, 32, 32)
    net.eval()
    back.eval()
    assert torch.equal(net(x), back(x)) and back.arch == json.loads(json.dumps(net.arch))
    assert [p.shape for p in build(net.arch).parameters()] == [p.shape for p in net.parameters()]


def test_width_and_depth_are_checked():
    with pytest.raises(ValueError, match=r"width must be a number in \(0, 8\], got 0"):
        ZOO["vgg9"](width=0)
    with pytest.raises(ValueError, match="depth must be one of"):
        build({"name": "vgg", "depth": 11})
    from imcsim.limits import check_arch

    with pytest.raises(ConfigError, match=r"arch.width must be a number in \(0, 8\], got 1000"):
        check_arch({**ZOO["vgg9"]().arch, "width": 1000})


def test_zoo_vgg9_gives_spikesims_own_layer_list():
    specs = layer_specs(ZOO["vgg9"](timesteps=5), (3, 32, 32))
    assert spikesim_layers(specs, pooled=True) == VGG9_CIFAR10
    assert [s.name for s in specs][-2:] and len(specs) == 9  # 7 conv + 2 fc crossbar layers


def _idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    path.write_bytes(gzip.compress(bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
                                   + arr.tobytes()))


def test_cli_trains_and_prices_a_quarter_width_vgg9_on_mnist32(tmp_path, capsys):
    from imcsim.app.cli import main

    rng = np.random.default_rng(0)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 40))
    out = tmp_path / "v9"
    assert main(["train", "--dataset", "mnist32", "--data-dir", str(tmp_path), "--model", "vgg9", "--width", "0.125",
                 "--epochs", "1", "--timesteps", "2", "--out", str(out), "--quiet"]) == 0
    net, meta = load_checkpoint(out / "model.pt")
    assert net.arch["name"] == "vgg" and net.arch["width"] == 0.125 and net.arch["in_shape"] == [3, 32, 32]
    assert main(["energy", "--checkpoint", str(out / "model.pt"), "--preset", "rram", "--spike-rate", "0.1",
                 "--out", str(tmp_path / "en"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "en" / "energy.json").read_text())
    assert rep["report"]["energy_J"] > 0
    capsys.readouterr()
    for args, msg in ((["--model", "vgg9", "--channels", "8,8"], "--channels does not apply to vgg9"),
                      (["--model", "mlp", "--width", "0.5"], "--width scales vgg9, vgg16 and resnet19")):
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet",
                     *args]) == 2
        assert msg in capsys.readouterr().err
