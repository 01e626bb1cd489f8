"""Model conversion: a trained torch model -> the same model with its layers on crossbars."""

from .core import ConversionReport, LayerEntry, calibrate, convert, crossbar_layers, fold_batchnorm

__all__ = ["ConversionReport", "LayerEntry", "calibrate", "convert", "crossbar_layers", "fold_batchnorm"]
