"""imcsim: spiking and quantized neural networks on simulated analog IMC crossbars.

Data flow: trained model -> :func:`convert` (crossbar layers holding programmed tiles) ->
forward over timesteps / bit planes (layers record events) -> cost model.
"""

from .context import read_context
from .convert import ConversionReport, calibrate, convert, crossbar_layers, from_nir, reprogram, to_nir
from .crossbar import CrossbarConv, CrossbarConv2d, CrossbarLinear, InputSpec, TiledMatrix
from .events import collect_events, reset_events
from .hardware import ADCConfig, HardwareConfig, InputConfig, available_presets
from .models import Network, Stepwise, build, convnet, mlp, qnn_bits_for, resnet
from .neurons import IF, LIF, QuantAct, SpikingNeuron, reset_states

__version__ = "0.3.0"

__all__ = [
    "ADCConfig", "ConversionReport", "CrossbarConv", "CrossbarConv2d", "CrossbarLinear", "HardwareConfig", "IF",
    "InputConfig", "InputSpec", "LIF", "Network", "QuantAct", "SpikingNeuron", "Stepwise", "TiledMatrix",
    "available_presets", "build", "calibrate", "collect_events", "convert", "convnet", "crossbar_layers", "from_nir", "mlp",
    "qnn_bits_for", "read_context", "reprogram", "resnet", "reset_events", "reset_states", "to_nir",
]
