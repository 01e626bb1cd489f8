"""Model conversion: a trained torch model -> the same model with its layers on crossbars.

``convert`` traces any torch.fx-traceable model (:mod:`.graph`), replaces the neurons of
snnTorch / SpikingJelly / Norse (:mod:`.frameworks`), and ``from_nir`` / ``to_nir``
exchange networks with NIR (:mod:`.nir`).
"""

from .core import ConversionReport, calibrate, convert, crossbar_layers, fold_batchnorm, reprogram
from .nir import from_nir, to_nir

__all__ = ["ConversionReport", "calibrate", "convert", "crossbar_layers", "fold_batchnorm", "from_nir", "reprogram",
           "to_nir"]
