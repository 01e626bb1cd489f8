"""Cost model: technology tables (per-event energy / latency) and the pricing of event counts.

Simulation counts events; this package prices them. It never runs a network.
"""

from .model import *  # noqa: F401,F403
from .model import __all__ as _model_all
from .technology import ADC_MODELS, Technology, available_technologies

__all__ = [*_model_all, "ADC_MODELS", "Technology", "available_technologies"]
