"""SpikeSim-compatible mode: SpikeSim's released estimator (ela_spikesim.py), reproduced.

For a list of conv layers ``(in_channels, out_channels, in_dim, out_dim)``, crossbars of
X x X, k x k kernels and P processing elements (PEs) per tile:

* PEs per layer ceil(in/X) ceil(out/X); tiles = ceil(sum of PEs / P). SpikeSim stops when
  the PE counts are not in increasing order ("Check layer order"); imcsim computes anyway and
  says so in ``warnings``.
* Energy per PE cycle (pJ): ``E_pe = E_htree + E_mem_fetch + E_neuron(4) + (X/8) PE_ar +
  (X/8) 16 E_sub + (X/8) E_temp_buffer + E_tile_buffer`` with ``PE_ar = k^2 E_xbar + (X/8)
  (E_adc + E_mux)``; a layer runs ceil(out/X) ceil(in/X) out_dim^2 PE cycles per timestep.
* Latency: layer i does ``out_dim^2 out_ch T`` units of one PE cycle (26 clocks at 250 MHz =
  104 ns) and starts when layer i-1 has done ``int(0.75 out_dim^2 out_ch) T`` of its units;
  the latency is the end of the last layer x PE cycle (SpikeSim's printed figure). SpikeSim
  cannot run (an endless loop) when every layer rounds to 0 PEs in its tile map; imcsim then
  refuses with a message.
* Area (um^2): per tile ``(X/8) A_sub + A_temp_buffer + A_tile_buffer + P A_pe + A_htree``
  with ``A_pe = k^2 A_xbar + (X/8)(A_adc + A_mux)``, plus one stored value (0.7391 x 22 um^2)
  per input activation of every layer and per output (membrane) of the first five layers --
  SpikeSim's released ``compute_area`` counts only ``out_ch[0:5]``, and so does this mode.

Its energy does not depend on activity (it is dense), and its latency is not consistent with
its energy (the latency counts ``out_ch`` PE cycles per output pixel, the energy one); see
docs/cost_model.md for how imcsim's event model relates to it.
"""

from __future__ import annotations

import math

from .technology import Technology

VGG9_CIFAR10 = [(3, 64, 32, 32), (64, 64, 32, 16), (64, 128, 16, 16), (128, 128, 16, 8), (128, 256, 8, 8),
                (256, 256, 8, 8), (256, 256, 8, 4)]
"""SpikeSim's shipped VGG9 / CIFAR-10 example: (in_channels, out_channels, in_dim, out_dim)."""


def spikesim_estimate(layers, timesteps: int, tech: Technology | None = None, *, xbar: int = 64, kernel: int = 3,
                      pe_per_tile: int = 8) -> dict:
    """Energy, latency and area of SpikeSim's released estimator for a conv layer list."""
    tech = tech or Technology.preset("spikesim-65nm-rram")
    s = tech.spikesim
    if s is None:
        raise ValueError(f"technology {tech.name!r} has no [spikesim] section of SpikeSim's constants")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    for name, v in (("xbar", xbar), ("kernel", kernel), ("pe_per_tile", pe_per_tile)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    layers = [tuple(layer) for layer in layers]
    if not layers or any(len(layer) != 4 or min(layer) < 1 for layer in layers):
        raise ValueError("layers must be a non-empty list of (in_channels, out_channels, in_dim, out_dim), all >= 1")
    warnings = []
    pes = [math.ceil(i / xbar) * math.ceil(o / xbar) for i, o, _, _ in layers]
    if pes != sorted(pes):
        warnings.append("SpikeSim's estimator refuses this layer list ('Check layer order': PE counts not increasing); "
                        "imcsim computes it anyway")
    exact = [(i / xbar) * (o / xbar) for i, o, _, _ in layers]
    if exact != sorted(exact):
        warnings.append("SpikeSim's latency model refuses this layer list (fractional PE counts not increasing)")
    if all(int(p) == 0 for p in exact):
        raise ValueError("SpikeSim's latency model cannot run this layer list: every layer rounds to 0 PEs in its "
                         "tile map (an endless loop in ela_spikesim.latency_gen); use fewer columns per crossbar")
    n_pe = sum(pes)
    tiles = math.ceil(n_pe / pe_per_tile)

    g = xbar / 8
    pe_ar = kernel**2 * s["xbar_read_pJ"] + g * (s["adc_pJ"] + s["mux_pJ"])
    e_pe = (s["htree_pJ"] + s["mem_fetch_pJ"] + s["neuron_pJ_per_4"] + g * pe_ar + g * 16 * s["sub_pJ"]
            + g * s["temp_buffer_pJ"] + s["tile_buffer_pJ"])
    cycles = [p * od * od for p, (_, _, _, od) in zip(pes, layers)]
    per_layer = [c * e_pe * timesteps for c in cycles]

    pe_cycle_ns = s["pe_cycle_clocks"] * 1000.0 / s["clock_MHz"]
    f = s["pipeline_start_fraction"]
    work = [od * od * o * timesteps for _, o, _, od in layers]
    head = [int(f * od * od * o) * timesteps for _, o, _, od in layers]
    done = [0] + [sum(head[: j + 1]) for j in range(len(head) - 1)]
    halts = [w + d for w, d in zip(work, done)]
    latency_ns = halts[-1] * pe_cycle_ns

    a_pe = kernel**2 * s["xbar_area_um2"] + g * (s["adc_area_um2"] + s["mux_area_um2"])
    tile_area = g * s["sub_area_um2"] + s["temp_buffer_area_um2"] + s["tile_buffer_area_um2"] + pe_per_tile * a_pe \
        + s["htree_area_um2"]
    inputs = sum(i * idim * idim for i, _, idim, _ in layers) * s["value_memory_area_um2"]
    neuron_mem = sum(o * od * od for _, o, _, od in layers[:5]) * s["value_memory_area_um2"]
    area_um2 = tile_area * tiles + inputs + neuron_mem
    energy_pJ = sum(per_layer)
    # the same PE-cycle energy split into imcsim's components (sums to energy_J)
    per_cycle = {"crossbar": g * kernel**2 * s["xbar_read_pJ"], "adc": g * g * s["adc_pJ"], "mux": g * g * s["mux_pJ"],
                 "shift_add": g * 16 * s["sub_pJ"], "neuron": s["neuron_pJ_per_4"],
                 "buffers": g * s["temp_buffer_pJ"] + s["tile_buffer_pJ"] + s["mem_fetch_pJ"],
                 "interconnect": s["htree_pJ"]}
    total_cycles = sum(cycles) * timesteps
    return {
        "pe_cycle_energy_pJ": e_pe,
        "pe_cycle_ns": pe_cycle_ns,
        "pes": n_pe,
        "tiles": tiles,
        "pe_cycles_per_timestep": cycles,
        "energy_per_layer_pJ": per_layer,
        "energy_J": energy_pJ * 1e-12,
        "energy_by_component_J": {k: v * total_cycles * 1e-12 for k, v in per_cycle.items()},
        "latency_s": latency_ns * 1e-9,
        "edp_Js": energy_pJ * 1e-12 * latency_ns * 1e-9,
        "area_mm2": area_um2 * 1e-6,
        "area_components_mm2": {"tiles": tile_area * tiles * 1e-6, "input_memory": inputs * 1e-6,
                                "neuron_memory": neuron_mem * 1e-6},
        "timesteps": timesteps,
        "warnings": warnings,
    }


def spikesim_layers(specs, pooled: bool = False) -> list[tuple[int, int, int, int]]:
    """SpikeSim's (in_channels, out_channels, in_dim, out_dim) of the conv layers of a layer
    list (:func:`imcsim.cost.layer_specs`). out_dim is the size a conv layer computes;
    ``pooled=True`` writes instead the size after the pooling that follows it, as SpikeSim's
    own VGG9 list does (its estimator then prices a conv + pool layer at the pooled size: 4x
    fewer PE cycles for a 2x2 pool)."""
    out = []
    for i, s in enumerate(specs):
        if s.kind != "conv":
            continue
        od = s.out_dim
        nxt = specs[i + 1] if i + 1 < len(specs) else None
        if pooled and nxt is not None:
            if nxt.kind == "conv" and nxt.in_dim:
                od = nxt.in_dim
            elif nxt.kind == "linear" and s.out_features and nxt.in_features % s.out_features == 0:
                side = math.isqrt(nxt.in_features // s.out_features)
                od = side if side * side * s.out_features == nxt.in_features else od
        out.append((s.in_channels, s.out_features, s.in_dim or s.out_dim, od))
    return out


def compare_with_spikesim(report, specs, timesteps: int, tech: Technology | None = None) -> dict | None:
    """imcsim's event-model ``report`` of a network beside SpikeSim's released estimator on
    the same conv layers, with what differs itemised (None if the network has no conv
    layer; a ValueError saying why if SpikeSim's estimator cannot run them). ``specs``: the
    network's layer list."""
    layers = spikesim_layers(specs)
    if not layers:
        return None
    ss = spikesim_estimate(layers, int(timesteps), tech)
    pooled = spikesim_estimate(spikesim_layers(specs, pooled=True), int(timesteps), tech)
    conv = {s.name for s in specs if s.kind == "conv"}
    stages = {layer.stage for layer in report.layers if layer.kind == "crossbar" and layer.name in conv}
    ours = dict.fromkeys(ss["energy_by_component_J"], 0.0)
    outside = {"other crossbar layers (e.g. fully connected)": 0.0, "digital operations (pooling, adds)": 0.0,
               "off-chip input": 0.0, "static power": 0.0, "drivers and accumulators": 0.0}
    for layer in report.layers:
        e = report.layer_energy_pJ(layer)
        outside["static power"] += e.pop("leakage", 0.0) * 1e-12
        in_conv = layer.stage in stages and layer.kind in ("crossbar", "spiking", "quant")
        for k, v in e.items():
            if not v:
                continue
            if not in_conv:
                key = ("off-chip input" if layer.kind == "input" else "digital operations (pooling, adds)"
                       if layer.kind == "digital" else "other crossbar layers (e.g. fully connected)")
                outside[key] += v * 1e-12
            elif k in ours:
                ours[k] += v * 1e-12
            else:
                outside["drivers and accumulators"] += v * 1e-12
    return {"spikesim": ss, "spikesim_pooled_dims": {k: pooled[k] for k in ("energy_J", "latency_s", "area_mm2")},
            "ratio": {"energy": report.energy_J / ss["energy_J"], "latency": report.latency_s / ss["latency_s"],
                      "area": report.area_mm2 / ss["area_mm2"]},
            "conv_layers_by_component_J": {k: {"imcsim": ours[k], "spikesim": ss["energy_by_component_J"][k]}
                                           for k in ours},
            "not_in_spikesim_J": {k: v for k, v in outside.items() if v}}
