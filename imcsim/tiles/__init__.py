"""The stages of a crossbar layer, each a module of its own that can be read and timed alone
(:func:`imcsim.tiles.timing.stage_times`); :class:`imcsim.crossbar.TiledMatrix` runs them:

1. ``programming`` -- float weights -> integer levels on tiles -> programmed conductances
   (variation, faults, drift) -> IR-drop-loaded effective conductances -> the matrices of
   the read in compute order (once per chip instance);
2. ``encode`` (in TiledMatrix) -- inputs -> integers -> driver planes -> row-tile reads;
3. ``matmul`` -- column currents (and read-noise variances) of every read;
4. ``readout`` -- keyed read noise, then the ADC (or the range observer of calibration);
   on the CPU one numba pass (``fused``), bit-identical to the two stages;
5. ``shift_add`` -- slices, polarities, planes and row tiles combined digitally;
6. ``counting`` -- the events the cost model prices.
"""

from .timing import stage_times

__all__ = ["stage_times"]
