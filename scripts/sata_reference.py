"""Produce the reference numbers imcsim's systolic model is checked against, by running
the released SATA_Sim (RuokaiYin/SATA_Sim) itself, and CACTI figures for the buffers.

The workloads and cacti commands do not import imcsim; they need a SATA_Sim checkout whose bundled CACTI is
built (``make -C cacti clean all``) and a Python that runs SATA_Sim: numpy < 1.24
(SCALE-Sim uses ``np.int``), pandas, pyyaml, tqdm, absl-py and torch (imported by
hw_kernels.py). SATA_Sim's pipeline (comp-utils, mem-utils, cycle-utils -> SCALE-Sim,
energy-cal) is run in a scratch copy per workload, unmodified; two things are set up
around it, as its README leaves them to the user:

* energy-cal.py reads ``arch-config.yaml``, the other stages ``sata-config.yaml``: both get
  the architecture file;
* SCALE-Sim is found through PYTHONPATH (its modules import ``scalesim.*``).

SCALE-Sim's cycle statistics depend only on the layer list and the architecture (cycle-utils
reads nothing else), so a workload whose layers and architecture were already simulated
reuses them (recorded as ``cycle_stats_reused``); comp-utils, mem-utils (CACTI) and
energy-cal always run.

    python scripts/sata_reference.py workloads --sata-sim /path/to/SATA_Sim --python /venv/bin/python \\
        --out tests/data/sata_sim_reference.json
    python scripts/sata_reference.py cacti --sata-sim /path/to/SATA_Sim --out imcsim/presets/systolic/cacti.toml
    python scripts/sata_reference.py compare      # imcsim against the stored numbers (needs only imcsim)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE / "sata_workloads"

# (tag, workload, architecture): SATA_Sim's shipped workloads on its shipped SATA
# architecture, then the configurations generated here (another T and sparsity, another
# layer list, another array and buffer sizes).
RUNS = [
    ("vgg9_cifar10", "inference-energy-cal/workload.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("icassp_bntt", "inference-energy-cal/workloads/icassp/workload._bntt.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("icassp_direct", "inference-energy-cal/workloads/icassp/workload_direct.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("icassp_lth", "inference-energy-cal/workloads/icassp/workload_lth.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("icassp_sbp", "inference-energy-cal/workloads/icassp/workload_sbp.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("icassp_tdbn", "inference-energy-cal/workloads/icassp/workload_tdbn.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("icassp_tssl", "inference-energy-cal/workloads/icassp/workload_tssl.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("gen_vgg9_T6_s080", "@g1_workload.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("gen_small_T4_s085", "@g2_workload.yaml", "inference-energy-cal/archs/sata-config.yaml"),
    ("gen_small_T8_s090_16x16", "@g3_workload.yaml", "@g3_arch.yaml"),
    ("gen_small_T1_s060_eyeriss", "@g4_workload.yaml", "inference-energy-cal/archs/eyeriss-config.yaml"),
]


def _yaml():
    import yaml

    return yaml


def _path(sata: Path, rel: str) -> Path:
    return GEN / rel[1:] if rel.startswith("@") else sata / rel


def run_one(sata: Path, python: str, workload: Path, arch: Path, cache_dir: Path, log: Path) -> dict:
    yaml = _yaml()
    wl, ar = yaml.safe_load(workload.read_text()), yaml.safe_load(arch.read_text())
    key = hashlib.md5(json.dumps([wl["Layers"], ar], sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir / f"cycle-stat-{key}.yaml"
    with tempfile.TemporaryDirectory(prefix="sata_ref_") as tmp:
        work = Path(tmp)
        for d in ("inference-energy-cal", "scale-sim", "cacti"):
            shutil.copytree(sata / d, work / d, symlinks=True,
                            ignore=shutil.ignore_patterns("venv", "running_results", "obj_dbg", "obj_opt"))
        iec = work / "inference-energy-cal"
        for f in (iec / "results").glob("*.yaml"):  # never read the results SATA_Sim ships
            f.unlink()
        (work / "scale-sim" / "running_results").mkdir(exist_ok=True)
        shutil.copy(workload, iec / "workload.yaml")
        shutil.copy(arch, iec / "sata-config.yaml")
        shutil.copy(arch, iec / "arch-config.yaml")
        env = dict(os.environ, PYTHONPATH=str(work / "scale-sim"),
                   PATH=str(Path(python).parent) + os.pathsep + os.environ["PATH"])
        stages = ["comp-utils.py", "mem-utils.py", "cycle-utils.py", "energy-cal.py"]
        reused = cache.exists()
        if reused:
            shutil.copy(cache, iec / "results" / "cycle-stat.yaml")
            stages.remove("cycle-utils.py")
        with open(log, "w") as lf:
            for st in stages:
                subprocess.run([python, st], cwd=iec, stdout=lf, stderr=subprocess.STDOUT, env=env, check=False)
        text = log.read_text(errors="replace")
        if "Traceback" in text or "failed" in text:
            raise SystemExit(f"SATA_Sim failed on {workload.name}: see {log}")
        if not reused:
            shutil.copy(iec / "results" / "cycle-stat.yaml", cache)
        res = {name: yaml.safe_load((iec / "results" / f"{name}.yaml").read_text())
               for name in ("cycle-stat", "mem-stat", "comp-stat", "computation-energy", "memory-energy")}
    res["cycle_stats_reused"] = reused
    res["workload"], res["arch"] = wl, ar
    res["total_energy_nJ"] = res["computation-energy"]["total"] + res["memory-energy"]["total"]
    return res


def total_cycles(res: dict) -> float:
    """energy-cal's cycle total for the 'sata' dataflow (it does not write it out)."""
    T = res["workload"]["General"]["timestep"]
    return sum((s["SRAM OFMAP Start Cycle"] + s["SRAM OFMAP Cycles"]) * T + s["SRAM Filter Cycles"]
               for s in res["cycle-stat"].values())


def cmd_workloads(a) -> None:
    sata = Path(a.sata_sim).resolve()
    commit = subprocess.run(["git", "-C", str(sata), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = Path(a.out)
    data = json.loads(out.read_text()) if out.exists() and a.resume else {"runs": {}}
    data.update(source="RuokaiYin/SATA_Sim", commit=commit or a.commit,
                command="python scripts/sata_reference.py workloads " + " ".join(sys.argv[2:]))
    cache_dir = Path(a.cache or tempfile.mkdtemp(prefix="sata_cycles_"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for tag, wl, ar in RUNS:
        if a.only and tag not in a.only.split(","):
            continue
        if tag in data["runs"] and a.resume:
            continue
        t0 = time.time()
        res = run_one(sata, a.python, _path(sata, wl), _path(sata, ar), cache_dir, cache_dir / f"{tag}.log")
        res["seconds"] = round(time.time() - t0, 1)
        res["total_cycles"] = total_cycles(res)
        res["workload_file"], res["arch_file"] = wl, ar
        data["runs"][tag] = res
        out.write_text(json.dumps(data, indent=1, sort_keys=True))
        print(f"{tag}: {res['total_energy_nJ']:.6g} nJ, {res['total_cycles']:.6g} cycles "
              f"({res['seconds']} s{', cycle stats reused' if res['cycle_stats_reused'] else ''})", flush=True)


CACTI_ROWS = [("sram", kib * 1024, 32, 2) for kib in (8, 16, 32, 64, 128, 144, 256, 512)] + \
             [("dram", 536870912, 128, 16)]
KEYS = {"Total dynamic read energy per access (nJ):": "read_nJ",
        "Total dynamic write energy per access (nJ):": "write_nJ",
        "Total leakage power of a bank (mW):": "leakage_mW",
        "Read energy": "read_nJ"}


def cmd_cacti(a) -> None:
    """Run SATA_Sim's bundled CACTI on its own templates (cacti/sram-config, cacti/dram-config)
    with the size / bank / block substitutions mem-utils.py makes; parse as mem-utils does."""
    cacti = Path(a.sata_sim).resolve() / "cacti"
    lines = ["# Buffer and DRAM figures from CACTI 7 as bundled with SATA_Sim (RuokaiYin/SATA_Sim, cacti/,",
             "# built from source with `make -C cacti clean all`), run on SATA_Sim's own templates",
             "# (cacti/sram-config/sram-config.cfg: 28 nm, itrs-lop cells and periphery, 1 read + 1 write port,",
             "# direct mapped; cacti/dram-config/dram-config.cfg) with size, bank count and block size",
             "# substituted as SATA_Sim's mem-utils.py does. Produced by:",
             "#   python scripts/sata_reference.py cacti --sata-sim SATA_Sim --out imcsim/presets/systolic/cacti.toml",
             "# read_nJ / write_nJ: dynamic energy per block access; leakage_mW: leakage of a bank.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, size, block, banks in CACTI_ROWS:
            tpl = (cacti / f"{kind}-config" / f"{kind}-config.cfg").read_text()
            cfg = (tpl.replace("-size (bytes) y", f"-size (bytes) {size}")
                   .replace("-UCA bank count z", f"-UCA bank count {banks}")
                   .replace("-block size (bytes) i", f"-block size (bytes) {block}"))
            p = Path(tmp) / f"{kind}-{size}.cfg"
            p.write_text(cfg)
            r = subprocess.run(["./cacti", "-infile", str(p)], cwd=cacti, capture_output=True, text=True)
            got = {}
            for line in r.stdout.splitlines():
                for k, name in KEYS.items():
                    if k in line:
                        got[name] = float(re.search(r"[-+]?\d*\.\d+|\d+", line).group())
            need = ["read_nJ"] if kind == "dram" else ["read_nJ", "write_nJ", "leakage_mW"]
            if any(n not in got for n in need):
                raise SystemExit(f"CACTI gave no figures for {kind} {size} B:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
            lines += [f"[[{kind}]]", f"size_bytes = {size}", f"block_bytes = {block}", f"banks = {banks}"]
            lines += [f"{n} = {got[n]!r}" for n in need] + [""]
            print(kind, size, {n: got[n] for n in need}, flush=True)
    Path(a.out).write_text("\n".join(lines))


def cmd_compare(a) -> None:
    """imcsim's sata_estimate against the stored SATA_Sim numbers: energy, cycles, time."""
    sys.path.insert(0, str(HERE.parent))
    from imcsim.cost.systolic import layer_access_counts, sata_estimate

    data = json.loads(Path(a.reference).read_text())
    rows = []
    print(f"SATA_Sim {data['source']} @ {data['commit']}")
    print(f"{'run':28s} {'SATA_Sim nJ':>14s} {'imcsim nJ':>14s} {'rel err':>9s} {'SATA_Sim cycles':>16s} "
          f"{'imcsim cycles':>14s} {'rel err':>9s} {'SATA_Sim s*':>11s} {'imcsim s':>9s}")
    for tag, ref in data["runs"].items():
        layer_access_counts.cache_clear()  # time each run from scratch
        t0 = time.perf_counter()
        est = sata_estimate(ref["workload"], ref["arch"])  # the shipped CACTI table, not SATA_Sim's mem-stat
        dt = time.perf_counter() - t0
        ee = est["total_energy_nJ"] / ref["total_energy_nJ"] - 1
        ec = est["total_cycles"] / ref["total_cycles"] - 1
        rows.append({"run": tag, "sata_sim_energy_nJ": ref["total_energy_nJ"], "imcsim_energy_nJ": est["total_energy_nJ"],
                     "energy_rel_err": ee, "sata_sim_cycles": ref["total_cycles"], "imcsim_cycles": est["total_cycles"],
                     "cycles_rel_err": ec, "sata_sim_seconds": ref["seconds"],
                     "sata_sim_cycle_stats_reused": ref["cycle_stats_reused"], "imcsim_seconds": dt})
        print(f"{tag:28s} {ref['total_energy_nJ']:14.6g} {est['total_energy_nJ']:14.6g} {ee:9.2e} "
              f"{ref['total_cycles']:16.0f} {est['total_cycles']:14.0f} {ec:9.2e} {ref['seconds']:11.1f} {dt:9.2f}")
    print("* SATA_Sim's wall time for the run; where its SCALE-Sim statistics were reused from an earlier full run, "
          "without that run (see the reference file's notes)")
    worst = max(abs(r["energy_rel_err"]) for r in rows), max(abs(r["cycles_rel_err"]) for r in rows)
    print(f"largest relative error: energy {worst[0]:.2e}, cycles {worst[1]:.2e} (bounds: 2e-2 energy, 1e-2 cycles)")
    from imcsim.io import write_text  # atomic, and makes the folder

    write_text(a.out, json.dumps({"commit": data["commit"], "rows": rows, "max_energy_rel_err": worst[0],
                                  "max_cycles_rel_err": worst[1]}, indent=1))
    print(f"written {a.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workloads", help="run SATA_Sim on the reference workloads")
    w.add_argument("--sata-sim", required=True)
    w.add_argument("--python", default=sys.executable, help="a Python that runs SATA_Sim (numpy < 1.24)")
    w.add_argument("--out", default=str(HERE.parent / "tests" / "data" / "sata_sim_reference.json"))
    w.add_argument("--cache", help="folder for SCALE-Sim cycle statistics and logs")
    w.add_argument("--only", help="comma-separated run tags")
    w.add_argument("--commit", default="", help="SATA_Sim commit, if the checkout is not a git repository")
    w.add_argument("--resume", action="store_true", help="keep runs already in --out")
    c = sub.add_parser("cacti", help="CACTI figures for the buffer sizes imcsim ships")
    c.add_argument("--sata-sim", required=True)
    c.add_argument("--out", required=True)
    k = sub.add_parser("compare", help="imcsim's sata_estimate against the stored SATA_Sim numbers")
    k.add_argument("--reference", default=str(HERE.parent / "tests" / "data" / "sata_sim_reference.json"))
    k.add_argument("--out", default="results/sata_compare.json")
    a = ap.parse_args()
    {"workloads": cmd_workloads, "cacti": cmd_cacti, "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    main()
