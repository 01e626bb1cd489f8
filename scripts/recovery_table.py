"""One table from several `imcsim evaluate` output folders (docs/recovering_accuracy.md).

    python scripts/recovery_table.py --float 98.85 "SNN, float training=runs/ev_snn" \
        "SNN, hardware-aware=runs/ev_snn_hat" --out recovery.json

Each LABEL=DIR row takes the folder's chip rows (`evaluate.json`): the base hardware row,
and with a sweep every swept point as its own row (labelled LABEL, FIELD=VALUE). ``--float``
gives the float model's accuracy the "vs float" column is measured against (default: each
folder's own float row). Prints a markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows_of(label: str, folder: Path, float_acc: float | None) -> list[dict]:
    data = json.loads((folder / "evaluate.json").read_text())
    rows = data["accuracy"]
    ref = float_acc if float_acc is not None else next(r["mean"] for r in rows if r["hardware"].startswith("float"))
    out = []
    for r in rows:
        if r.get("n", 1) < 2:  # float / ideal / X-ideal rows: one value, not chip rows
            continue
        name = label if r["hardware"] == data["hardware"]["name"] else f"{label}, {r['hardware']}"
        out.append({"row": name, "mean": r["mean"], "std": r["std"], "chips": r["n"], "min": min(r["values"]),
                    "vs_float_pp": r["mean"] - ref, "float": ref, "folder": str(folder)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", nargs="+", help="LABEL=DIR: an imcsim evaluate output folder")
    p.add_argument("--float", type=float, default=None, dest="float_acc",
                   help="float accuracy (%%) to compare against (default: each folder's float row)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    a = p.parse_args(argv)
    table = []
    for spec in a.rows:
        if "=" not in spec:
            p.error(f"row {spec!r} must look like LABEL=DIR")
        label, folder = spec.split("=", 1)
        if not (Path(folder) / "evaluate.json").is_file():
            p.error(f"{folder!r} holds no evaluate.json (an imcsim evaluate output folder)")
        table += rows_of(label, Path(folder), a.float_acc)
    print("| model | accuracy % (mean +- std over chips) | worst chip | vs float (pp) |")
    print("|---|---|---|---|")
    for r in table:
        print(f"| {r['row']} | {r['mean']:.2f} +- {r['std']:.2f} ({r['chips']} chips) | {r['min']:.2f} | "
              f"{r['vs_float_pp']:+.2f} |")
    if a.out:
        Path(a.out).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
