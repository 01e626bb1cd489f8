"""Property-based fuzz of what users type: hardware and technology TOML files, and the
command line. The properties: nothing ever escapes as a traceback; a config is either refused
with a ConfigError naming the problem or accepted *exactly* as written (no key dropped, no
value coerced from another type); an argv with any bad value exits 2 before any work starts,
and an argv of good values reaches the work. Budget: IMCSIM_FUZZ_EXAMPLES examples per property
(default 150, a few seconds); ``python scripts/fuzz.py`` runs a longer budget."""

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a test dependency (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from imcsim import HardwareConfig  # noqa: E402
from imcsim.app import cli, workflows  # noqa: E402
from imcsim.cost import Technology  # noqa: E402
from imcsim.errors import ConfigError  # noqa: E402
from imcsim.hardware import MAX_SEED  # noqa: E402
from imcsim.tomlio import load_toml  # noqa: E402

EXAMPLES = int(os.environ.get("IMCSIM_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------ a small TOML writer


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON escapes are valid TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_text(doc: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


def leaves(d: dict, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def lookup(d, path):
    for k in path:
        d = d[k]
    return d


def same(written, kept) -> bool:
    """An accepted value is kept as written: same type family (a bool is never a number) and value."""
    if isinstance(written, bool) or isinstance(kept, bool):
        return type(written) is type(kept) and written == kept
    if isinstance(written, (int, float)):
        return isinstance(kept, (int, float)) and float(written) == float(kept)
    if isinstance(written, list):
        return isinstance(kept, (list, tuple)) and len(written) == len(kept) and all(map(same, written, kept))
    return written == kept


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.one_of(st.integers(-(2**70), 2**70), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2), st.booleans(), text,
                    st.sampled_from(["lossless", "gaussian", "lognormal", "differential", "offset", "per_layer",
                                     "column", "pair", "dac", "bit_serial", "float32", "float64", "linear", "points",
                                     "calibrated", "fixed", "analog", "digital", ""]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text, scalars, max_size=2))


@st.composite
def mutated(draw, base: dict):
    """``base`` with some leaves replaced, removed or added (known and unknown keys)."""
    doc = json.loads(json.dumps(base))
    paths = [p for p, _ in leaves(doc)]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add", "section"]))
        if op in ("replace", "remove") and paths:
            path = draw(st.sampled_from(paths))
            try:
                parent = lookup(doc, path[:-1])
            except (KeyError, TypeError):
                continue
            if not isinstance(parent, dict) or path[-1] not in parent:
                continue
            if op == "remove":
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(values)
        elif op == "add":
            sections = [k for k, v in doc.items() if isinstance(v, dict)]
            where = doc if not sections or draw(st.booleans()) else doc[draw(st.sampled_from(sections))]
            where[draw(st.one_of(text, st.sampled_from([p[-1] for p in paths])))] = draw(values)
        else:
            doc[draw(st.sampled_from(list(doc)))] = draw(values)
    return doc


def load_or_refuse(loader, body):
    """(loaded object or None, the parsed document) of ``body`` written to a TOML file; a
    refusal must be one clean line naming the file."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.toml"
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
        try:
            return loader(path), load_toml(path)
        except ConfigError as e:
            assert_clean(e)
            assert str(path) in str(e)
            return None, None


def accepted_exactly(doc: dict, kept: dict):
    for path, v in leaves(doc):
        try:
            k = lookup(kept, path)
        except (KeyError, TypeError):
            raise AssertionError(f"accepted but dropped {'.'.join(path)} = {v!r}") from None
        if isinstance(v, dict):  # an empty table: only where a table belongs
            assert isinstance(k, dict), f"accepted an empty table for the value {'.'.join(path)}"
            continue
        assert same(v, k), f"{'.'.join(path)}: wrote {v!r}, kept {k!r}"


def assert_clean(e: ConfigError):
    msg = str(e)
    assert msg and "\n" not in msg.strip() and "Traceback" not in msg


# ------------------------------------------------------------------------------ hardware and technology TOML

HW_BASE = HardwareConfig.preset("rram").to_dict()
TECH_BASE = load_toml(Path(Technology.preset("spikesim-65nm-rram").path))


def _hardware_round_trips(cfg):
    assert HardwareConfig.from_dict(cfg.to_dict()) == cfg


def _technology_numbers_are_sane(tech):
    for section, fields in tech.to_dict().items():  # every number it will multiply is finite and >= 0
        if isinstance(fields, dict):
            for k, v in fields.items():
                if isinstance(v, float):
                    assert math.isfinite(v) and v >= 0, (section, k, v)


@pytest.mark.parametrize("cls, base, extra_check", [(HardwareConfig, HW_BASE, _hardware_round_trips),
                                                    (Technology, TECH_BASE, _technology_numbers_are_sane)],
                         ids=["hardware", "technology"])
@FUZZ
@given(data=st.data())
def test_config_toml_is_refused_clearly_or_kept_exactly(cls, base, extra_check, data):
    doc = data.draw(mutated(base))
    obj, _ = load_or_refuse(cls.from_toml, toml_text(doc))
    if obj is not None:
        accepted_exactly(doc, obj.to_dict())
        extra_check(obj)


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), text.map(lambda s: s * 3),
                      st.lists(st.sampled_from(["[", "]", "=", "a", "\"", "{", "}", "\n", "[[x]]", "1e999", "nan",
                                                "seed = ", "[adc]\n", "bits", ",", "'''", "#"]), max_size=30).map("".join)))
def test_any_bytes_as_hardware_toml_never_escape_as_a_traceback(body):
    cfg, parsed = load_or_refuse(HardwareConfig.from_toml, body)
    if cfg is not None:
        accepted_exactly(parsed, cfg.to_dict())


# ------------------------------------------------------------------------------ the command line

GOOD_TOML = toml_text({"name": "fuzz", "crossbar": {"rows": 32, "cols": 32}})
STUDY = {
    "--seed": (st.integers(0, MAX_SEED).map(str), st.sampled_from(["-1", str(MAX_SEED + 1), "1e23", "1.5", "", "nan",
                                                                    "abc", "0x10"])),
    "--engine": (st.sampled_from(["serial", "processes"]), st.sampled_from(["gpu", "", "Serial"])),
    "--workers": (st.integers(1, 4).map(str), st.sampled_from(["0", "-2", "x", "1.0"])),
    "--threads": (st.integers(1, 8).map(str), st.sampled_from(["0", "1.5", "-1"])),
    "--retries": (st.integers(0, 5).map(str), st.sampled_from(["-1", "101"])),
    "--calibration-samples": (st.integers(1, 1000).map(str), st.sampled_from(["0", "-5", "many"])),
    "--batch-size": (st.integers(1, 512).map(str), st.sampled_from(["0", "-1", "2.5"])),
    "--device": (st.just("cpu"), st.sampled_from(["tpu", "CPU", ""])),
    "--address": (None, st.sampled_from(["127.0.0.1:6379"])),  # without --engine ray: refused
    "--resume": (st.just(None), None),
    "--quiet": (st.just(None), None),
}
HW = {
    "--preset": (st.sampled_from(["ideal", "rram", "rram-ideal", "spikesim"]),
                 st.sampled_from(["", "nope", "ideal,ideal", " ", "rram,"])),
    "--config": (st.just("@good"), st.sampled_from(["@missing", "@empty", "@bad"])),
}
DATA = {"--test-limit": (st.integers(1, 10**6).map(str), st.sampled_from(["0", "-3", "ten"]))}
TECH = {"--tech": (st.sampled_from(["puma-32nm", "spikesim-65nm-rram"]),
                   st.sampled_from(["nope", "", "missing.toml", "@bad"]))}
COMMANDS = {
    "evaluate": {**STUDY, **HW, **DATA, "--checkpoint": (st.just("model.pt"), None),
                 "--chips": (st.integers(1, 9).map(str), st.sampled_from(["0", "-1"])),
                 "--sweep": (st.sampled_from(["device.variation=0,0.05", "adc.bits=3,4,lossless", "rows=32,64"]),
                             st.sampled_from(["device.variation=abc", "adc.bits=0", "nope=1", "device.variation=nan",
                                              "adc.bits=4,,5", "adc.bits", "device.variation=-1"]))},
    "energy": {**STUDY, **HW, **DATA, **TECH, "--checkpoint": (st.just("model.pt"), None),
               "--analytical": (st.just(None), None),
               "--spike-rate": (st.floats(0, 1).map(repr), st.sampled_from(["1.5", "nan", "-0.1", "inf"])),
               "--latency-mode": (st.sampled_from(["sequential", "pipelined"]), st.sampled_from(["x", ""]))},
    "timesteps": {**STUDY, **DATA, **TECH, "--checkpoint": (st.just("model.pt"), None),
                  "--preset": (st.sampled_from(["ideal", "rram", "rram-ideal,rram", "ideal,spikesim"]),
                               st.sampled_from(["", "ideal,ideal", "rram,", "nope"])),
                  "--config": HW["--config"],
                  "--thetas": (st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=4).map(
                      lambda v: ",".join(map(repr, v))), st.sampled_from(["nan", "0", "", "0.1,,0.2", "2", "-0.5"])),
                  "--tolerance": (st.floats(0, 100).map(repr), st.sampled_from(["-1", "inf", "nan", "101"])),
                  "--rule": (st.sampled_from(["entropy", "entropy_mean", "max_confidence"]), st.just("margin"))},
    "compare": {**STUDY, **HW, **DATA, **TECH, "--snn": (st.just("snn.pt"), None), "--qnn": (st.just("qnn.pt"), None)},
    "demo": {**STUDY, "--timesteps": (st.integers(1, 64).map(str), st.sampled_from(["0", "65", "four"])),
             "--chips": (st.integers(1, 9).map(str), st.sampled_from(["0"]))},
    "train": {
        "--seed": STUDY["--seed"], "--quiet": (st.just(None), None), "--device": STUDY["--device"],
        "--dataset": (st.sampled_from(["digits", "event-digits"]), st.sampled_from(["imagenet", ""])),
        "--model": (st.sampled_from(list(workflows.MODELS)), st.just("transformer")),
        "--kind": (st.sampled_from(["snn", "qnn"]), st.just("ann")),
        "--timesteps": (st.integers(1, 64).map(str), st.sampled_from(["0", "65"])),
        "--neuron": (st.sampled_from(["if", "lif"]), st.just("izhikevich")),
        "--encoding": (st.sampled_from(["direct", "rate"]), st.just("latency")),
        "--hidden": (st.lists(st.integers(1, 512), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
                     st.sampled_from(["0", "a", "", "8,,4", "-8"])),
        "--channels": (st.sampled_from(["8", "16,32"]), st.sampled_from(["0", "x"])),
        "--epochs": (st.integers(1, 50).map(str), st.sampled_from(["0", "-1"])),
        "--batch-size": (st.integers(1, 256).map(str), st.sampled_from(["0"])),
        "--lr": (st.floats(1e-6, 1.0).map(repr), st.sampled_from(["0", "nan", "11", "-1e-3"])),
        "--loss": (st.sampled_from(["mean", "per_timestep", "per_timestep_cumulative"]), st.just("mse")),
        "--activity-lambda": (st.floats(0, 10).map(repr), st.sampled_from(["-1", "inf"])),
        "--weight-noise": (st.floats(0, 1).map(repr), st.sampled_from(["11", "-0.1", "nan"])),
        "--holdout": (st.integers(0, 100).map(str), st.sampled_from(["-1"])),
        "--train-limit": (st.integers(1, 10**5).map(str), st.sampled_from(["0"])),
        "--test-limit": DATA["--test-limit"],
    },
}


@st.composite
def command_lines(draw):
    """(argv without --out, whether some value in it is bad)."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    flags = COMMANDS[name]
    argv, bad = [name], False
    chosen = draw(st.lists(st.sampled_from(sorted(flags)), unique=True, max_size=6))
    required = [f for f in ("--checkpoint", "--snn", "--qnn") if f in flags]
    if "--config" in chosen and "--preset" in chosen:  # mutually exclusive: argparse refuses
        bad = True
    for flag in required + [f for f in chosen if f not in required]:
        good, wrong = flags[flag]
        use_wrong = good is None or (wrong is not None and draw(st.integers(0, 7)) == 0)
        value = draw(wrong if use_wrong else good)
        bad |= use_wrong
        argv += [flag] if value is None else [flag, value]
    return argv, bad


def run_cli(argv, tmp: Path):
    """cli.main with the work itself replaced by a stub; returns (exit code, stderr, whether work ran)."""
    (tmp / "good.toml").write_text(GOOD_TOML)
    (tmp / "empty.toml").write_text("")
    (tmp / "bad.toml").write_text("[crossbar\nrows = 3")
    argv = [str(tmp / a[1:]) + ".toml" if a.startswith("@") else a for a in argv]
    ran = []

    def work(*args, **kw):
        ran.append(kw)
        return "stubbed"

    stubs = {f"cmd_{c}": work for c in ("train", "import", "evaluate", "energy", "timesteps", "compare", "demo")}
    err = io.StringIO()
    with mock.patch.multiple(workflows, **stubs), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(argv)
    return rc, err.getvalue(), bool(ran)


@FUZZ
@given(case=command_lines())
def test_command_lines_with_a_bad_value_exit_2_before_work_and_good_ones_run(case):
    argv, bad = case
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        rc, err, ran = run_cli(argv + ["--out", str(out)], Path(d))
        assert "Traceback" not in err
        if bad:
            assert rc == 2 and not ran, (argv, rc, err)
            assert len(err.strip().splitlines()) == 1, err
            assert not out.exists(), "a refused run left an output folder"
        else:
            assert rc == 0 and ran, (argv, rc, err)


TOKENS = sorted({f for c in COMMANDS.values() for f in c} | set(COMMANDS) | {"import", "--out", "--force", "--version",
                                                                             "--help", "-h", "--", "-"})


@FUZZ
@given(argv=st.lists(st.one_of(st.sampled_from(TOKENS), text), max_size=8))
def test_any_argv_exits_cleanly(argv):
    with tempfile.TemporaryDirectory() as d:
        argv = [a.replace("@", "") for a in argv]
        cwd = os.getcwd()
        os.chdir(d)  # relative --out values land in the temporary folder
        try:
            rc, err, ran = run_cli(argv, Path(d))
        finally:
            os.chdir(cwd)
        assert "Traceback" not in err
        assert rc in (0, 1, 2), (argv, rc, err)
        if rc != 0:
            assert err.strip(), "a failure without a word"
