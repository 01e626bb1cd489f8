"""Cost model: power, performance and area from event counts, resources and technology tables.

Simulation counts events; this package prices them (it never runs a network):

* :mod:`.technology` -- per-event energy / latency, per-component area and static power;
* :mod:`.scaling` -- technology-node and bit-width scaling (Stillmaker & Baas, Horowitz);
* :mod:`.architecture` -- what a mapped layer instantiates (arrays, ADCs, drivers, units,
  buffers) and how long a read takes;
* :mod:`.pricing` -- energy, latency, area and leakage per layer, and :class:`CostReport`;
* :mod:`.estimate` -- event-driven and analytical estimates, SNN-vs-QNN break-even;
* :mod:`.spikesim` -- SpikeSim's released estimator, reproduced;
* :mod:`.systolic` -- a SATA-style digital systolic array (and SATA_Sim's estimator, reproduced);
* :mod:`.neuromorphic` -- an analytical digital neuromorphic core (after Yan et al.);
* :mod:`.platforms` -- one SNN-vs-QNN comparison across the three platforms.
"""

from .architecture import LayerGeometry, geometry_of, lossless_adc_bits, psum_bits
from .estimate import (LayerSpec, activity_weighted_rate, analytical_counts, analytical_estimate, breakeven_spike_rate,
                       check_fits, compare_reports, estimate, layer_specs, measured_activity, offchip_bits,
                       per_sample_cost)
from .pricing import AREA_COMPONENTS, COMPONENTS, DIGITAL_PERIPHERY, LATENCY_MODES, CostReport, LayerCost
from .spikesim import VGG9_CIFAR10, compare_with_spikesim, spikesim_estimate, spikesim_layers
from .systolic import sata_estimate, systolic_estimate
from .technology import ADC_MODELS, Technology, available_technologies

__all__ = ["ADC_MODELS", "AREA_COMPONENTS", "COMPONENTS", "CostReport", "DIGITAL_PERIPHERY", "LATENCY_MODES",
           "LayerCost", "LayerGeometry", "LayerSpec", "Technology", "VGG9_CIFAR10", "activity_weighted_rate",
           "analytical_counts", "analytical_estimate", "available_technologies", "breakeven_spike_rate", "check_fits",
           "compare_reports", "compare_with_spikesim", "estimate", "geometry_of", "layer_specs", "lossless_adc_bits", "measured_activity",
           "offchip_bits", "per_sample_cost", "psum_bits", "sata_estimate", "spikesim_estimate", "spikesim_layers",
           "systolic_estimate"]
