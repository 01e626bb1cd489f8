"""imcsim against SpikeSim's released estimator (ela_spikesim.py).

1. SpikeSim-compatible mode (:func:`imcsim.cost.spikesim_estimate`) on three layer lists,
   beside the figures the released script prints for them (run once by hand on its commit
   c2627bc; the script is not shipped here).
2. imcsim's event model at dense activity on VGG9 / CIFAR-10, T = 5, with the ``spikesim``
   hardware preset (SpikeSim's architecture) and with the default ``rram`` preset, both
   priced with spikesim-65nm-rram, leakage off (SpikeSim has none): energy, latency and area
   ratios and the energy by component. docs/cost_model.md explains each difference.
3. A converted network, as a researcher brings one: VGG9 written in PyTorch with snnTorch
   ``Leaky`` neurons and BatchNorm (SpikeSim's seven conv layers, fc 1024, fc 10; 3x32x32
   input, T = 5), converted onto ``--preset spikesim`` and priced at the defaults with
   :func:`imcsim.cost.estimate`, beside SpikeSim's estimator on the same conv layers
   (:func:`imcsim.cost.compare_with_spikesim`, what `imcsim energy` prints), component by
   component; then the same model on ``rram`` with static power, and what dominates there.
   The weights are untrained (seed 0; BatchNorm statistics from 32 random images, gain 1.5,
   so that every layer spikes): activity moves imcsim's crossbar and ADC energy, not
   SpikeSim's, which is dense. Needs snnTorch (``pip install 'imcsim[frameworks]'``).

    python scripts/spikesim_compare.py [--out results/spikesim_compare.json] [--no-converted]
"""

from __future__ import annotations

import argparse
import sys
import time

import imcsim
from imcsim.cost import VGG9_CIFAR10, LayerSpec, Technology, analytical_estimate, spikesim_estimate
from imcsim.io import machine_info, write_json

RELEASED = [  # name, layers, T, keyword arguments, area um^2, energy pJ, latency ns (printed by ela_spikesim.py)
    ("VGG9 / CIFAR-10 (shipped example)", VGG9_CIFAR10, 5, dict(xbar=64, kernel=3, pe_per_tile=8),
     8425528.755833998, 15906934.026240002, 62832640.0),
    ("small MNIST CNN, PE/tile 4", [(1, 32, 28, 28), (32, 64, 28, 14), (64, 64, 14, 14), (64, 128, 14, 7)], 4,
     dict(xbar=64, kernel=3, pe_per_tile=4), 2890674.452478, 4221965.4061312, 18264064.0),
    ("wide CNN, 128x128 crossbars", [(3, 128, 32, 32), (128, 128, 32, 16), (128, 256, 16, 16), (256, 256, 16, 8),
                                     (256, 512, 8, 8)], 2, dict(xbar=128, kernel=3, pe_per_tile=8),
     10077638.375358, 6989451.132928001, 45154304.0),
]


def vgg9_specs():
    """VGG9's conv layers as imcsim layer specs: 3x3 convolutions, direct-encoded 8-bit input."""
    return [LayerSpec(f"conv{i + 1}", "conv", ci * 9, co, do * do, "analog" if i == 0 else "spike", 8 if i == 0 else 1,
                      "spiking", 1, ci, do, 1, co * do * do, ci * di * di, co * do * do, di)
            for i, (ci, co, di, do) in enumerate(VGG9_CIFAR10)]


def snntorch_vgg9(timesteps: int = 5, seed: int = 0):
    """SpikeSim's VGG9 in snnTorch (Leaky neurons, BatchNorm, average pooling), untrained,
    as an imcsim.Stepwise model; BatchNorm statistics from random images, gain 1.5."""
    import snntorch as snn
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                snn.Leaky(beta=0.9, init_hidden=True)]

    layers = (block(3, 64) + block(64, 64) + [nn.AvgPool2d(2)] + block(64, 128) + block(128, 128) + [nn.AvgPool2d(2)]
              + block(128, 256) + block(256, 256) + block(256, 256) + [nn.AvgPool2d(2), nn.Flatten(),
              nn.Linear(256 * 4 * 4, 1024, bias=False), nn.BatchNorm1d(1024), snn.Leaky(beta=0.9, init_hidden=True),
              nn.Linear(1024, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)])
    net = nn.Sequential(*layers)
    model = imcsim.Stepwise(net)
    bns = [m for m in net if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for m in bns:
        m.momentum = None  # cumulative average over the statistics pass
    net.train()
    with torch.no_grad():
        model(torch.rand(timesteps, 32, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1)))
    for m in bns:
        m.weight.data.fill_(1.5)
    return model.eval()


def converted_vgg9(out: dict, tech: Technology, T: int = 5, batch: int = 8) -> None:
    import torch

    from imcsim.cost import compare_with_spikesim, estimate, layer_specs

    model = snntorch_vgg9(T)
    x = torch.rand(T, batch, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    print(f"\n3. A converted network: VGG9 in snnTorch (Leaky, BatchNorm), T = {T}, {batch} random CIFAR-shaped "
          "inputs, priced at the defaults")
    rows = []
    for preset in ("spikesim", "rram"):
        t0 = time.perf_counter()
        chip = imcsim.convert(model, imcsim.HardwareConfig.preset(preset), calibration=x)
        imcsim.reset_events(chip)
        with torch.no_grad():
            chip(x)
        rep = estimate(chip, tech, timesteps=T)  # the defaults: static power as the hardware says
        specs = layer_specs(chip, (3, 32, 32))
        cmp = compare_with_spikesim(rep, specs, T, tech)
        ss, r = cmp["spikesim"], cmp["ratio"]
        row = {"hardware": preset, "energy_J": rep.energy_J, "latency_s": rep.latency_s, "area_mm2": rep.area_mm2,
               "leakage_counted": rep.leakage, "spikesim_same_layers": {k: ss[k] for k in ("energy_J", "latency_s",
                                                                                            "area_mm2")},
               "spikesim_pooled_dims": cmp["spikesim_pooled_dims"], "ratio": r,
               "conv_layers_by_component_J": cmp["conv_layers_by_component_J"],
               "not_in_spikesim_J": cmp["not_in_spikesim_J"], "findings": rep.findings(),
               "spike_rates": rep.spike_rates(), "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"  {preset}: energy {rep.energy_J * 1e6:.3f} uJ, latency {rep.latency_s * 1e3:.3f} ms, area "
              f"{rep.area_mm2:.3f} mm^2 ({'with' if rep.leakage else 'no'} static power); SpikeSim on the same conv "
              f"layers {ss['energy_J'] * 1e6:.3f} uJ, {ss['latency_s'] * 1e3:.3f} ms, {ss['area_mm2']:.3f} mm^2: "
              f"x{r['energy']:.2f} energy, x{r['latency']:.2f} latency, x{r['area']:.2f} area")
        p = cmp["spikesim_pooled_dims"]
        print(f"    SpikeSim with pooled output sizes (its own VGG9 list): {p['energy_J'] * 1e6:.3f} uJ, "
              f"{p['latency_s'] * 1e3:.3f} ms, {p['area_mm2']:.3f} mm^2")
        print("    conv layers by component, imcsim / SpikeSim (uJ): " + ", ".join(
            f"{k} {v['imcsim'] * 1e6:.3g} / {v['spikesim'] * 1e6:.3g}"
            for k, v in cmp["conv_layers_by_component_J"].items()))
        print("    priced by imcsim only (uJ): " + ", ".join(f"{k} {v * 1e6:.3g}"
                                                           for k, v in cmp["not_in_spikesim_J"].items()))
        for f in rep.findings():
            print(f"    dominant: {f}")
    out["converted_vgg9"] = rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/spikesim_compare.json")
    ap.add_argument("--no-converted", action="store_true", help="skip part 3 (needs snnTorch)")
    args = ap.parse_args(argv)
    tech = Technology.preset("spikesim-65nm-rram")
    out = {"script": "spikesim_compare", **machine_info(), "compatible": [], "event_model": []}
    print("1. SpikeSim-compatible mode vs the released estimator")
    print(f"{'layer list':<36} {'T':>2} {'':>8} {'area mm2':>14} {'energy uJ':>14} {'latency ms':>14}")
    for name, layers, T, kw, area, energy, latency in RELEASED:
        r = spikesim_estimate(layers, T, **kw)
        row = {"layers": name, "T": T, "released": {"area_um2": area, "energy_pJ": energy, "latency_ns": latency},
               "imcsim": {"area_um2": r["area_mm2"] * 1e6, "energy_pJ": r["energy_J"] * 1e12,
                          "latency_ns": r["latency_s"] * 1e9}}
        out["compatible"].append(row)
        print(f"{name:<36} {T:>2} {'released':>8} {area * 1e-6:14.6f} {energy * 1e-6:14.6f} {latency * 1e-6:14.6f}")
        print(f"{'':<36} {'':>2} {'imcsim':>8} {r['area_mm2']:14.6f} {r['energy_J'] * 1e6:14.6f} "
              f"{r['latency_s'] * 1e3:14.6f}")
    ss = spikesim_estimate(VGG9_CIFAR10, 5)
    print("\n2. Event model, dense activity, VGG9 / CIFAR-10, T = 5, leakage off")
    print(f"{'hardware':<10} {'energy uJ':>10} {'x SpikeSim':>10} {'latency ms':>11} {'x SpikeSim':>10} "
          f"{'area mm2':>9} {'x SpikeSim':>10}  energy by component")
    print(f"{'SpikeSim':<10} {ss['energy_J'] * 1e6:10.3f} {1:10.2f} {ss['latency_s'] * 1e3:11.3f} {1:10.2f} "
          f"{ss['area_mm2']:9.3f} {1:10.2f}")
    for preset in ("spikesim", "rram"):
        hw = imcsim.HardwareConfig.preset(preset)
        rep = analytical_estimate(vgg9_specs(), hw, tech, 5, 1.0, input_rate=1.0, leakage=False)
        comp = rep.by_component()
        share = {k: v / rep.energy_J for k, v in comp.items() if v}
        row = {"hardware": preset, "energy_J": rep.energy_J, "latency_s": rep.latency_s, "area_mm2": rep.area_mm2,
               "energy_ratio": rep.energy_J / ss["energy_J"], "latency_ratio": rep.latency_s / ss["latency_s"],
               "area_ratio": rep.area_mm2 / ss["area_mm2"], "energy_share": share,
               "area_by_component_mm2": rep.area_by_component()}
        out["event_model"].append(row)
        top = ", ".join(f"{k} {100 * v:.0f} %" for k, v in sorted(share.items(), key=lambda kv: -kv[1])[:4])
        print(f"{preset:<10} {rep.energy_J * 1e6:10.3f} {row['energy_ratio']:10.2f} {rep.latency_s * 1e3:11.3f} "
              f"{row['latency_ratio']:10.2f} {rep.area_mm2:9.3f} {row['area_ratio']:10.2f}  {top}")
    out["spikesim_vgg9_T5"] = {k: ss[k] for k in ("energy_J", "latency_s", "area_mm2", "pes", "tiles")}
    if not args.no_converted:
        converted_vgg9(out, tech)
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
