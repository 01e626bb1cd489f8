"""HardwareConfig: validation, TOML loading, presets, overrides."""

import pytest

from imcsim.errors import ConfigError
from imcsim.hardware import HardwareConfig, available_presets


def test_presets_load_and_round_trip(tmp_path):
    assert {"ideal", "rram"} <= set(available_presets())
    rram = HardwareConfig.preset("rram")
    assert rram.rows == 64 and rram.adc.bits == 4 and rram.device.variation > 0 and not rram.wires.is_ideal
    assert HardwareConfig.from_dict(rram.to_dict()) == rram
    ideal = HardwareConfig.ideal()
    assert ideal.adc.lossless and ideal.wires.is_ideal and ideal.device.is_ideal
    assert HardwareConfig.from_dict(ideal.to_dict()) == ideal


def test_toml_file(tmp_path):
    p = tmp_path / "hw.toml"
    p.write_text('name = "mine"\n[crossbar]\nrows = 32\ncols = 16\n[adc]\nbits = "lossless"\n[device]\ng_off = 0.0\n')
    hw = HardwareConfig.from_toml(p)
    assert (hw.name, hw.rows, hw.cols, hw.adc.bits) == ("mine", 32, 16, None)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[crossbar]\nrows = 0\n", r"crossbar.rows must be >= 1, got 0"),
        ("[adc]\nbits = 20\n", r"adc.bits must be <= 16, got 20"),
        ("[adc]\nrange = 'auto'\n", r"adc.range must be one of 'calibrated', 'fixed', got 'auto'"),
        ("[device]\nvariation = -1.0\n", r"device.variation must be >= 0.0"),
        ("[wires]\nr_row = -2.0\n", r"wires.r_row must be >= 0.0, got -2.0"),
        ("[weights]\nbits = 1\n", r"weights.bits must be >= 2, got 1"),
        ("[adc]\nbitz = 4\n", r"\[adc\] unknown key 'bitz'; allowed: "),
        ("colour = 'red'\n", r"unknown key 'colour'"),
        ("[adc]\nper = 'pair'\n[weights]\nmapping = 'offset'\n", r"adc.per = 'pair' needs weights.mapping = 'differential'"),
        ("[device]\ng_off = 0.0\n[wires]\nr_row = 1.0\n", r"device.g_off must be > 0 S when wire resistance is on"),
        ("[crossbar\nrows = 3\n", r"is not valid TOML"),
    ],
)
def test_bad_toml_names_file_and_field(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        HardwareConfig.from_toml(p)
    assert "bad.toml" in str(e.value)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="hardware config file not found"):
        HardwareConfig.from_toml(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"unknown hardware preset 'rram9'; available: ideal, pcm, pcm-ideal, rram"):
        HardwareConfig.preset("rram9")


def test_replace_with_dotted_fields():
    hw = HardwareConfig.preset("rram").replace(**{"device.variation": 0.2, "adc.bits": 6, "rows": 32})
    assert (hw.device.variation, hw.adc.bits, hw.rows) == (0.2, 6, 32)
    with pytest.raises(ConfigError, match=r"unknown field 'adc.bitz'"):
        hw.replace(**{"adc.bitz": 3})
    with pytest.raises(ValueError, match=r"adc.bits must be >= 1, got 0"):
        hw.replace(**{"adc.bits": 0})


def test_derived_slice_counts():
    hw = HardwareConfig.ideal(weight_bits=8, **{"device.bits_per_cell": 3})
    assert hw.magnitude_bits == 7 and hw.slices == 3 and hw.columns_per_weight == 6
    hw = hw.replace(mapping="offset")
    assert hw.magnitude_bits == 8 and hw.slices == 3 and hw.columns_per_weight == 3


def test_ideal_counterpart_presets_and_names():
    names = available_presets()
    assert "rram-ideal" in names and "spikesim-ideal" in names
    twin = HardwareConfig.preset("rram-ideal")
    rram = HardwareConfig.preset("rram")
    assert twin.name == "rram-ideal" and twin.rows == rram.rows and twin.adc == rram.adc
    assert twin.device.is_ideal and twin.wires.is_ideal and twin.ideal_counterpart() == twin
    for bad in ("", "  ", None):
        with pytest.raises(ConfigError, match="preset name must be a non-empty string"):
            HardwareConfig.preset(bad)
    with pytest.raises(ValueError, match="wire_precision"):
        rram.replace(wire_precision="float16")
    assert rram.wire_precision == "float32" and HardwareConfig().wire_precision == "float64"
