"""Longer property-based fuzz of the TOML loaders and the command line than CI runs.

Runs tests/test_fuzz.py with IMCSIM_FUZZ_EXAMPLES examples per property (CI: 150) and
random (not derandomized) search, then prints and writes what it ran and found.

    python scripts/fuzz.py --examples 5000 --out fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=3000, help="examples per property (default 3000)")
    ap.add_argument("--out", default="fuzz.json", help="JSON results file (default fuzz.json)")
    a = ap.parse_args()
    if a.examples < 1:
        ap.error(f"--examples must be >= 1, got {a.examples}")
    env = {**os.environ, "IMCSIM_FUZZ_EXAMPLES": str(a.examples)}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                        str(ROOT / "tests" / "test_fuzz.py")], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = r.stdout.splitlines()
    passed = [ln.split("::")[-1] for ln in lines if ln.startswith("PASSED")]
    failed = [ln.split("::")[-1] for ln in lines if ln.startswith("FAILED")]
    result = {"examples_per_property": a.examples, "properties_passed": passed, "properties_failed": failed,
              "pytest_exit_code": r.returncode, "wall_s": round(wall, 1)}
    print(r.stdout[-6000:])
    print(json.dumps(result, indent=2))
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
