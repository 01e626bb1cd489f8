"""Digital-periphery share of the energy on the DT-SNN hardware setup (VGG-16 / CIFAR-10 on
64x64 RRAM crossbars with 4-bit cells), to set beside the ~45 % the DT-SNN paper reports
(Li et al., DAC 2023: "digital peripherals (input switching, buffers, accumulators) ~45 %,
crossbar + ADC ~25 %").

Analytical estimate (no CIFAR-10 download, no training): the VGG-16 layer list is mapped onto
the ``spikesim`` hardware preset (64x64, 4-bit cells, 4-bit ADCs shared by 8 columns) and
priced with a technology preset, at assumed per-layer spike rates (DT-SNN does not state its
rates; 0.1-0.2 is typical of direct-encoded VGG SNNs on CIFAR-10) and T = 1, 2, 4. The shares
are of the dynamic energy (leakage off, as in DT-SNN's and SpikeSim's accounting); the
leakage the same inference adds (static power x latency, no power gating) is printed beside
them. Two shares are printed: imcsim's digital periphery (shift-add, accumulators, neurons, digital ops,
buffers, interconnect) and DT-SNN's grouping, which counts input switching (row drivers)
as digital too.

    python scripts/dtsnn_digital_share.py [--out results/dtsnn_digital_share.json]
"""

from __future__ import annotations

import argparse
import sys

import torch

import imcsim
from imcsim.cost import DIGITAL_PERIPHERY, Technology, analytical_estimate, layer_specs
from imcsim.io import machine_info, write_json

VGG16 = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL = (False, True, False, True, False, False, True, False, False, True, False, False, True)


def shares(rep) -> dict:
    comp = rep.by_component()
    total = sum(comp.values())
    return {
        "energy_J": rep.energy_J,
        "digital_share": sum(comp[k] for k in DIGITAL_PERIPHERY) / total,
        "digital_share_with_drivers": sum(comp[k] for k in DIGITAL_PERIPHERY + ("drivers",)) / total,
        "crossbar_adc_share": (comp["crossbar"] + comp["adc"] + comp["mux"]) / total,
        "by_component": {k: v / total for k, v in comp.items() if v},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/dtsnn_digital_share.json")
    ap.add_argument("--tech", default="spikesim-65nm-rram", help="technology preset (default spikesim-65nm-rram)")
    ap.add_argument("--preset", default="spikesim", help="hardware preset (default spikesim: 64x64, 4-bit cells)")
    ap.add_argument("--rates", default="0.05,0.1,0.2", help="assumed spike rates (default 0.05,0.1,0.2)")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = imcsim.convnet(in_shape=(3, 32, 32), channels=VGG16, pool=POOL, hidden=512, kind="snn", timesteps=4)
    hw = imcsim.HardwareConfig.preset(args.preset)
    tech = Technology.load(args.tech)
    specs = layer_specs(net, (3, 32, 32), hw)
    rows = []
    for T in (1, 2, 4):
        for r in rates:
            rep = analytical_estimate(specs, hw, tech, T, r, input_rate=0.5, leakage=False)
            leak = analytical_estimate(specs, hw, tech, T, r, input_rate=0.5, leakage=True)
            rows.append({"T": T, "spike_rate": r, **shares(rep), "latency_s": rep.latency_s, "static_W": rep.static_W,
                         "leakage_J": leak.energy_J - rep.energy_J})
    print(f"VGG-16 / CIFAR-10, {hw.name} hardware ({hw.describe()}), {tech.name}")
    print(f"{'T':>2} {'rate':>5} {'energy uJ':>10} {'digital %':>10} {'+drivers %':>11} {'xbar+ADC %':>11} "
          f"{'latency ms':>10} {'leakage uJ':>10}  top components")
    for row in rows:
        top = sorted(row["by_component"].items(), key=lambda kv: -kv[1])[:3]
        print(f"{row['T']:>2} {row['spike_rate']:>5.2f} {row['energy_J'] * 1e6:10.3f} {100 * row['digital_share']:10.1f} "
              f"{100 * row['digital_share_with_drivers']:11.1f} {100 * row['crossbar_adc_share']:11.1f} "
              f"{row['latency_s'] * 1e3:10.3f} {row['leakage_J'] * 1e6:10.2f}  "
              + ", ".join(f"{k} {100 * v:.0f} %" for k, v in top))
    print("DT-SNN (Li et al., DAC 2023) reports digital peripherals ~45 %, crossbar + ADC ~25 %.")
    write_json(args.out, {"script": "dtsnn_digital_share", **machine_info(), "hardware": hw.to_dict(), "technology": tech.name,
                          "layers": len(specs), "rows": rows, "reference": {"digital_share": 0.45, "crossbar_adc_share": 0.25}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
