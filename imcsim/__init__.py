"""imcsim: spiking and quantized neural networks on simulated analog IMC crossbars."""

__version__ = "0.1.0"
