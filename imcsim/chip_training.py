"""Hardware-aware training: the forward pass through the simulated chip, gradients to the float weights.

:class:`ChipInTheLoop` holds a float model and its converted twin (:func:`imcsim.convert`)
and links them. Before every training step :meth:`ChipInTheLoop.program` quantises the float
weights (BatchNorm folded in, as ``convert`` does) and programs them as a *training chip*:
programming variation and stuck-at faults drawn from the step's chip seed, the IR drop of the
programmed tiles solved, the ADC range calibrated on the step's batch. The forward pass then
is the converted chip's own forward -- read noise, finite on/off ratio, ADC quantisation and
clipping included -- so the network trains on exactly what it is evaluated on.

The backward pass is a straight-through estimate (:mod:`imcsim.surrogate`; the crossbar
output is not differentiable: rounding, clipping, integer slicing). Each crossbar layer's
output takes the gradient of ``x @ (gain * W_q)``, where ``W_q`` is the quantised weight
with an identity gradient through the rounding and ``gain`` is each weight's IR-drop
attenuation (its cells' effective / programmed conductance, weighted by level and slice
significance; 1 without wires). An
output's gradient is scaled by the share of its ADC conversions that did not clip
(:attr:`imcsim.crossbar.TiledMatrix.last_gate`), so a saturated output stops pulling its
weights. Programming variation, faults and read noise pass straight through, as in noise-
injection training (aihwkit's hardware-aware training does the same).

Training chip seeds are ``TRAIN_SEED_BASE + step`` (default base 2**31), disjoint from the
evaluation chips ``seed + c`` of a study unless a user puts ``--seed`` above 2**31; the
checkpoint records the range and ``imcsim evaluate`` refuses to evaluate on it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .convert.core import calibrate, convert, crossbar_layers, fold_batchnorm, layer_seed
from .crossbar import CrossbarConv, CrossbarLinear
from .errors import ConfigError
from .events import no_counting
from .hardware import MAX_SEED, HardwareConfig
from .neurons import QuantAct

TRAIN_SEED_BASE = 2**31
MODES = ("chip", "weights")


def weights_only(hw: HardwareConfig) -> HardwareConfig:
    """The chip's weight quantiser alone: the same weight bits and granularity on ideal,
    lossless hardware (quantisation-aware training of the crossbar weights)."""
    return HardwareConfig.ideal().replace(name=f"{hw.name} weights", weight_bits=hw.weight_bits,
                                          granularity=hw.granularity)


def _inner(model: nn.Module) -> nn.Module:
    from .models import Network, Stepwise

    return model.body if isinstance(model, Network) else model.module if isinstance(model, Stepwise) else model


def _twins(chip: nn.Module) -> list:
    return [m for m in chip.modules() if isinstance(m, (CrossbarLinear, CrossbarConv))]


class ChipInTheLoop:
    """A float ``model`` trained through its converted twin on ``hw``.

    ``program(step, batch)`` programs the current float weights as training chip
    ``seed_base + step`` and calibrates its ranges on ``batch``; ``chip(x)`` (the converted
    model) then runs forward on that chip with gradients reaching ``model``'s parameters.
    BatchNorm layers are used with their running statistics (folded into the weights, as on
    the chip) and learned activation clips are frozen while training through the chip (the
    next crossbar layer's input step depends on them).
    """

    def __init__(self, model: nn.Module, hw: HardwareConfig, calibration: torch.Tensor, *,
                 seed_base: int = TRAIN_SEED_BASE):
        if not isinstance(hw, HardwareConfig):
            raise ConfigError(f"hw must be a HardwareConfig, got {type(hw).__name__}")
        if not 0 <= seed_base <= MAX_SEED:
            raise ConfigError(f"seed_base must be in [0, {MAX_SEED}], got {seed_base}")
        self.model, self.hw, self.seed_base = model, hw, int(seed_base)
        was_training = model.training
        model.eval()
        with no_counting():
            self.chip = convert(model, hw, seed=self.seed_base, calibration=calibration)
        model.train(was_training)
        self.chip.eval()
        inner = _inner(model)
        self.layers = []  # (crossbar twin, its layer index on the chip: layer seeds as convert draws them)
        for twin in _twins(self.chip):
            try:
                source = inner.get_submodule(twin.source)
                bn = inner.get_submodule(twin.folded_bn) if twin.folded_bn else None
            except AttributeError:
                raise ConfigError(f"crossbar layer {twin.source!r} has no float module of that name in the model; "
                                  "hardware-aware training needs a model converted from its own modules") from None
            twin.weight_link = self._link(source, bn)
            twin.tiles.chip_training = True
            self.layers.append((twin, twin.tiles.seed - layer_seed(self.seed_base, 0)))
        if not self.layers:
            raise ConfigError("the model has no layer that maps onto crossbars: nothing to train through the chip")
        self._share_parameters(inner)
        self.step_seed: int | None = None

    @staticmethod
    def _link(layer: nn.Module, bn):
        if bn is None:
            return lambda: (layer.weight, layer.bias)
        return lambda: fold_batchnorm(layer.weight, layer.bias, bn)

    def _share_parameters(self, inner: nn.Module) -> None:
        """The chip's other modules (neurons, digital layers) use the float model's own
        parameters, so their gradients land there too."""
        floats = dict(inner.named_modules())
        chip_inner = _inner(self.chip)
        for name, m in chip_inner.named_modules():
            src = floats.get(name)
            if src is None or isinstance(m, (CrossbarLinear, CrossbarConv)):
                continue
            target = getattr(m, "module", m)  # a DigitalModule wraps the original module
            for pname in list(target._parameters):
                p = getattr(src, "_parameters", {}).get(pname)
                if isinstance(p, nn.Parameter) and p.shape == target._parameters[pname].shape:
                    target._parameters[pname] = p

    def frozen(self) -> list[nn.Parameter]:
        """Parameters training through the chip leaves alone: the activation clips (they set
        the next crossbar layer's input step). BatchNorm statistics stay fixed because the
        float model runs in eval mode."""
        return [m.clip for m in self.model.modules() if isinstance(m, QuantAct)]

    def program(self, step: int, batch: torch.Tensor) -> None:
        """Program the current float weights as training chip ``seed_base + step`` and
        calibrate its input and ADC ranges on ``batch``."""
        chip = self.seed_base + int(step)
        if chip > MAX_SEED:
            raise ConfigError(f"training chip seed {chip} exceeds {MAX_SEED}; use a smaller seed_base")
        with torch.no_grad():
            for twin, i in self.layers:
                w, b = twin.weight_link()
                twin.tiles.load_weight(w.reshape(twin.tiles.out_features, -1), layer_seed(chip, i))
                if twin.bias is not None and b is not None:
                    twin.bias.copy_(b)
        self.chip.chip_seed = chip
        self.step_seed = chip
        with no_counting():
            calibrate(self.chip, batch, batch_size=max(1, batch.shape[getattr(self.chip, "batch_dim", 0)]))

    def __call__(self, x: torch.Tensor):
        return self.chip(x)

    def record(self, steps: int, mode: str) -> dict:
        """What a checkpoint keeps about this training: the hardware and the chip seeds used."""
        return {"mode": mode, "hardware": self.hw.to_dict(), "chip_seeds": [self.seed_base, self.seed_base + steps - 1]}


def check_evaluation_seeds(meta: dict, seeds, what: str = "evaluation") -> None:
    """Refuse evaluation chips that the checkpoint was trained on."""
    rec = meta.get("hardware_training") if isinstance(meta, dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get("chip_seeds"), list) or len(rec["chip_seeds"]) != 2:
        return
    lo, hi = rec["chip_seeds"]
    used = [s for s in seeds if lo <= s <= hi]
    if used:
        raise ConfigError(f"{what} chip seed {used[0]} is one the model was trained on (hardware-aware training used "
                          f"chip seeds {lo}..{hi}); choose --seed so that the chips evaluated lie outside that range")


__all__ = ["ChipInTheLoop", "MODES", "TRAIN_SEED_BASE", "check_evaluation_seeds", "weights_only"]
