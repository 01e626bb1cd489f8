"""Physics of one resistive crossbar array and its read-out, batched over many tiles.

Knows nothing about neural networks: devices (:mod:`.devices`) and their drift after
programming (:mod:`.drift`), wire resistance
(:mod:`.wires`), analog-to-digital converters (:mod:`.adc`) and input drivers
(:mod:`.drivers`). SI units throughout: siemens, ohms, volts, amperes.
"""

from .adc import ADC, RangeObserver
from .devices import DeviceModel, column_read_noise
from .drivers import DRIVER_MODES, InputDriver
from .wires import (WireModel, effective_conductance, first_order_attenuation, nominal_wire_base,
                    perturbed_effective_conductance, solve_currents)

__all__ = [
    "ADC",
    "RangeObserver",
    "DeviceModel",
    "column_read_noise",
    "InputDriver",
    "DRIVER_MODES",
    "WireModel",
    "effective_conductance",
    "first_order_attenuation",
    "nominal_wire_base",
    "perturbed_effective_conductance",
    "solve_currents",
]
