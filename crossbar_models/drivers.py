"""Input drivers: how non-negative integer activations become row voltages.

Every mode returns *planes*: one crossbar read per plane, with row voltages
``plane * v_read`` (plane values in [0, 1]) and a digital weight per plane, such that
``sum_p weight[p] * plane[p] == x`` for the integer input ``x``. After the ADC, the digital
periphery forms the same weighted sum of the plane results (shift-and-add).

* ``binary``: spikes; x in {0, 1}; one read at v_read or 0 V.
* ``bit_serial``: x in [0, 2**bits - 1] applied one bit per read (LSB first, weight 2**k).
* ``dac``: one read with a multi-level DAC, voltage x / (2**bits - 1) * v_read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_choice, check_int, check_real, check_tensor

__all__ = ["InputDriver", "DRIVER_MODES"]

DRIVER_MODES = ("binary", "bit_serial", "dac")


@dataclass(frozen=True)
class InputDriver:
    """mode: one of DRIVER_MODES; bits: input resolution (1 for binary, 1..16 otherwise);
    v_read: read voltage in volts (> 0) applied for a full-scale input."""

    mode: str = "binary"
    bits: int = 1
    v_read: float = 0.2

    def __post_init__(self):
        check_choice("InputDriver.mode", self.mode, DRIVER_MODES)
        bits = check_int("InputDriver.bits", self.bits, low=1, high=16)
        if self.mode == "binary" and bits != 1:
            raise ValueError(f"InputDriver.bits must be 1 for mode 'binary', got {bits}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "v_read", check_real("InputDriver.v_read", self.v_read, low=0.0, low_open=True))

    @property
    def max_input(self) -> int:
        return 2**self.bits - 1

    @property
    def n_planes(self) -> int:
        """Crossbar reads per input vector."""
        return self.bits if self.mode == "bit_serial" else 1

    def plane_weights(self, dtype=torch.float32, device=None) -> torch.Tensor:
        if self.mode == "bit_serial":
            return 2.0 ** torch.arange(self.bits, dtype=dtype, device=device)
        return torch.tensor([float(self.max_input)], dtype=dtype, device=device)

    def planes(self, x: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """(P, *x.shape) plane values in [0, 1] for integer-valued inputs x >= 0."""
        x = check_tensor("x", x)
        if validate:
            self.check_input(x)
        if self.mode == "binary":
            return x.unsqueeze(0)
        if self.mode == "dac":
            return (x / self.max_input).unsqueeze(0)
        xi = x.to(torch.int64)
        shifts = torch.arange(self.bits, device=x.device).view(-1, *([1] * x.dim()))
        return ((xi.unsqueeze(0) >> shifts) & 1).to(x.dtype)

    def check_input(self, x: torch.Tensor) -> None:
        if x.numel() == 0:
            return
        bad = (x < 0) | (x > self.max_input) | (x != torch.round(x))
        if bool(bad.any()):
            v = x[bad].reshape(-1)[0].item()
            what = "binary spikes (0 or 1)" if self.mode == "binary" else f"integers in [0, {self.max_input}]"
            raise ValueError(f"input to a {self.mode!r} driver with bits={self.bits} must be {what}, got {v!r}")
