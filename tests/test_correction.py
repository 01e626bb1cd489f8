"""Post-programming correction (adc.correction): per-output gain and offset fitted from
reference reads of calibration data against the exact integer products."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from imcsim import convert, reprogram
from imcsim.errors import CalibrationError, ConfigError
from imcsim.hardware import HardwareConfig

WIRES = {"device.g_off": 1e-7, "wires.r_row": 15.0, "wires.r_col": 15.0, "rows": 32, "cols": 32}


def _layer(hw, seed=0, n_in=40, n_out=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False))


def test_fit_matches_least_squares_and_moments():
    """The fitted gain and offset are numpy's least-squares line (columns) or the mean and
    spread matched (moments), output by output."""
    model = _layer(None)
    x = (torch.rand(200, 40) < 0.3).float()
    for kind in ("columns", "moments"):
        hw = HardwareConfig.ideal().replace(**{"adc.correction": kind})
        chip = convert(model, hw, calibration=x)
        tiles = chip[0].tiles
        ideal = tiles.digital_product_int(x).numpy()
        rng = np.random.default_rng(1)
        measured = ideal * rng.uniform(0.7, 1.3, 8) + rng.normal(0, 2, ideal.shape) + rng.uniform(-5, 5, 8)
        tiles.start_correction_fit()
        tiles._fit_update(x, torch.tensor(measured), 1)
        assert tiles.finish_correction_fit() == 8
        for o in range(8):
            if kind == "columns":
                g, c = np.polyfit(ideal[:, o], measured[:, o], 1)
            else:
                g = measured[:, o].std() / ideal[:, o].std()
                c = measured[:, o].mean() - g * ideal[:, o].mean()
            assert float(tiles.col_gain[o]) == pytest.approx(g, rel=1e-5)
            assert float(tiles.col_offset[o]) == pytest.approx(c, rel=1e-4, abs=1e-4)
        corrected = tiles.correct(torch.tensor(measured)).numpy()
        if kind == "moments":
            assert np.allclose(corrected.mean(0), ideal.mean(0), atol=1e-3)
            assert np.allclose(corrected.std(0), ideal.std(0), rtol=1e-4)


def test_column_correction_reduces_the_ir_drop_error_on_new_inputs():
    model = _layer(None, seed=3)
    x_cal = (torch.rand(300, 40) < 0.3).float()
    x_new = (torch.rand(300, 40) < 0.3).float()
    base = HardwareConfig.ideal().replace(**WIRES)
    plain = convert(model, base, calibration=x_cal)
    fixed = convert(model, base.replace(**{"adc.correction": "columns"}), calibration=x_cal)
    exact = plain[0].tiles.digital_product_int(x_new).float() * plain[0].tiles.w_scale
    with torch.no_grad():
        err_plain = (plain(x_new) - exact).pow(2).mean()
        err_fixed = (fixed(x_new) - exact).pow(2).mean()
    assert float(err_fixed) < 0.25 * float(err_plain)


def test_correction_needs_calibration_and_refits_per_chip():
    model = _layer(None)
    x = (torch.rand(50, 40) < 0.3).float()
    hw = HardwareConfig.ideal().replace(**WIRES, **{"adc.correction": "columns", "device.variation": 0.1})
    with pytest.raises(CalibrationError, match="never fitted"):
        convert(model, hw, input_kind="spike")(x)
    chip = convert(model, hw, calibration=x)
    other = reprogram(chip, 5, calibration=x)
    assert not torch.equal(chip[0].tiles.col_gain, other[0].tiles.col_gain)
    assert torch.equal(other[0].tiles.col_gain, convert(model, hw, seed=5, calibration=x)[0].tiles.col_gain)
    with pytest.raises(ConfigError, match="adc.correction"):
        hw.replace(**{"adc.correction": "bogus"})
    assert "correction" not in HardwareConfig.preset("rram").to_dict()["adc"]  # default: records unchanged
    assert HardwareConfig.from_dict(hw.to_dict()) == hw
