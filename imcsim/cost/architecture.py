"""What the chip instantiates for a mapped layer, and how long a read takes.

For a crossbar layer with G groups of Tr x Tc tiles (rows x cols each), replicated r times
(``chip.replication``), c columns per ADC, tile columns ``cols``:

=================  ========================================================================
arrays             r G Tr Tc
ADCs per tile      ceil(cols / c)  (pair read-out: ceil(cols / max(c, 2)), one ADC per pair)
ADCs               r G Tc Tr ADCs-per-tile; with analog accumulation the Tr row tiles share
                   the column lines, so r G Tc ADCs-per-tile
column MUXes       one per ADC when c > 1
row drivers        arrays x rows
shift-add units    one per ADC
accumulators       r G Tc ADCs-per-tile when Tr > 1 and partial sums are added digitally
neuron units       chip.neuron_units, or one per output column group (r G Tc ADCs-per-tile)
buffers            input activations of one inference (numel x bits), outputs, and the
                   neuron state (membranes) of the activation that follows
=================  ========================================================================

Conversions per ADC per read: n = ceil(conversions per tile per read / ADCs per tile); a
read takes ``t_read + n t_adc(bits)``; without sample-and-hold the array is re-read for each
of the n conversion steps (energy x n). Latency of a layer: reads / r times that, or its
neuron updates / neuron units x t_update, whichever is longer (the two stages pipeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..crossbar import TiledMatrix
from ..hardware import HardwareConfig


def lossless_adc_bits(hw: HardwareConfig, row_tiles: int = 1) -> int:
    """Bits an ADC needs to read a column without loss: every row at the top level."""
    rows = hw.rows * (row_tiles if hw.adc.accumulate == "analog" else 1)
    return math.ceil(math.log2(rows * (2**hw.device.bits_per_cell - 1) + 1)) + (1 if hw.adc.per == "pair" else 0)


def psum_bits(in_features: int, hw: HardwareConfig, max_input: int) -> int:
    """Width of a partial sum: the largest |w x| sum of the layer, plus a sign bit (<= 32)."""
    top = max(1, in_features) * hw.weight_qmax * max(1, max_input)
    return min(32, math.ceil(math.log2(top + 1)) + 1)


@dataclass(frozen=True)
class LayerGeometry:
    """What the cost model needs to know about one crossbar layer."""

    name: str
    rows: int
    cols: int
    used_cols: int
    row_tiles: int
    col_tiles: int
    groups: int
    in_features: int
    out_features: int
    conversion_columns: int  # conversions per read of one row tile of one group (all its column tiles)
    adc_bits: int  # priced resolution (the lossless equivalent when the read-out is lossless)
    columns_per_adc: int
    per: str
    accumulate: str
    sample_and_hold: bool
    input_mode: str  # binary | bit_serial | dac
    input_bits: int
    psum_bits: int
    replication: int
    input_numel: int = 0  # per sample: the layer's input activations (input buffer)
    output_numel: int = 0
    v_read: float = 0.0  # read voltage (V) of a full-scale input; 0: the technology's reference

    @property
    def analog_sum(self) -> bool:
        return self.accumulate == "analog" and self.row_tiles > 1

    @property
    def adcs_per_tile(self) -> int:
        return math.ceil(self.cols / (max(self.columns_per_adc, 2) if self.per == "pair" else self.columns_per_adc))

    @property
    def arrays(self) -> int:
        return self.replication * self.groups * self.row_tiles * self.col_tiles

    @property
    def adcs(self) -> int:
        stacks = 1 if self.analog_sum else self.row_tiles
        return self.replication * self.groups * self.col_tiles * stacks * self.adcs_per_tile

    @property
    def muxes(self) -> int:
        return self.adcs if self.columns_per_adc > 1 else 0

    @property
    def drivers(self) -> int:
        return self.arrays * self.rows

    @property
    def accumulators(self) -> int:
        if self.row_tiles <= 1 or self.analog_sum:
            return 0
        return self.replication * self.groups * self.col_tiles * self.adcs_per_tile

    @property
    def column_groups(self) -> int:
        return self.replication * self.groups * self.col_tiles * self.adcs_per_tile

    @property
    def conversions_per_adc_per_read(self) -> int:
        per_tile = math.ceil(self.conversion_columns / self.col_tiles)
        return max(1, math.ceil(per_tile / self.adcs_per_tile))

    def read_ns(self, tech) -> float:
        """Time of one read (one input plane of one vector) on all tiles at once."""
        return tech.crossbar["read_latency_ns"] + self.conversions_per_adc_per_read * tech.adc_latency_ns(self.adc_bits)


def geometry_of(tm: TiledMatrix, replication: int | None = None) -> LayerGeometry:
    hw = tm.hw
    drv = tm.driver()
    max_in = tm.input_spec.max_int if tm.input_spec.kind != "analog" else 2**tm.input_spec.bits - 1
    return LayerGeometry(
        name=tm.name, rows=hw.rows, cols=hw.cols, used_cols=tm.grid.used_cols, row_tiles=tm.grid.row_tiles,
        col_tiles=tm.grid.col_tiles, groups=tm.groups, in_features=tm.in_features, out_features=tm.out_features,
        conversion_columns=tm.conversion_columns,
        adc_bits=lossless_adc_bits(hw, tm.grid.row_tiles) if hw.adc.lossless else hw.adc.bits,
        columns_per_adc=hw.adc.columns_per_adc, per=hw.adc.per, accumulate=hw.adc.accumulate,
        sample_and_hold=hw.adc.sample_and_hold, input_mode=drv.mode, input_bits=drv.bits,
        psum_bits=psum_bits(tm.in_group, hw, max_in), replication=replication or hw.chip.replication,
        input_numel=int(getattr(tm, "input_numel", 0) or tm.in_features),
        output_numel=int(getattr(tm, "output_numel", 0) or tm.out_features), v_read=hw.inputs.v_read,
    )
