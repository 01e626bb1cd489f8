"""CMOS technology-node scaling of area and energy, and bit-width scaling of digital logic.

Node scaling follows Stillmaker & Baas, "Scaling equations for the accurate prediction of
CMOS device performance from 180 nm to 7 nm", Integration 58 (2017) 74-81, in the tabulated
form used by the Accelergy / CiMLoop component models: area by a node-to-node factor table,
energy by the ratio of per-node polynomials a Vdd^2 + b Vdd + c evaluated at one supply
voltage (0.8 V unless given), with linear interpolation between tabulated nodes. Leakage
power is scaled like energy (as in those models).

Digital adders and multipliers follow Horowitz, "Computing's energy problem (and what we can
do about it)", ISSCC 2014, at 45 nm: 8-bit add 0.03 pJ / 36 um^2, 32-bit add 0.1 pJ /
137 um^2, 8-bit multiply 0.2 pJ / 282 um^2, 32-bit multiply 3.1 pJ / 3495 um^2; other widths
by the power law through the two published points (e.g. add energy ~ b^0.87, multiply energy
~ b^1.98), then scaled from 45 nm to the preset's node.
"""

from __future__ import annotations

import math

NODES = (130, 90, 65, 45, 32, 20, 16, 14, 10, 7)  # nm
AREA_SCALING = (  # AREA_SCALING[from][to]
    (1, 0.44, 0.23, 0.16, 0.072, 0.033, 0.03, 0.027, 0.016, 0.0092),
    (2.3, 1, 0.53, 0.35, 0.16, 0.075, 0.067, 0.061, 0.036, 0.021),
    (4.3, 1.9, 1, 0.66, 0.31, 0.14, 0.13, 0.12, 0.068, 0.039),
    (6.4, 2.8, 1.5, 1, 0.46, 0.21, 0.19, 0.17, 0.1, 0.059),
    (14, 6.1, 3.3, 2.2, 1, 0.46, 0.41, 0.38, 0.22, 0.13),
    (30, 13, 7.1, 4.7, 2.2, 1, 0.89, 0.82, 0.48, 0.28),
    (34, 15, 7.9, 5.3, 2.4, 1.1, 1, 0.91, 0.54, 0.31),
    (37, 16, 8.7, 5.8, 2.7, 1.2, 1.1, 1, 0.59, 0.34),
    (63, 28, 15, 9.8, 4.5, 2.1, 1.9, 1.7, 1, 0.58),
    (110, 48, 25, 17, 7.8, 3.6, 3.2, 2.9, 1.7, 1),
)
ENERGY_POLY = (  # per node: a, b, c of a Vdd^2 + b Vdd + c
    (7.171, -6.709, 2.904), (4.762, -4.781, 2.092), (3.755, -4.398, 1.975), (1.103, -0.362, 0.2767),
    (0.9559, -0.7823, 0.471), (0.373, -0.1582, 0.04104), (0.2958, -0.1241, 0.03024), (0.2363, -0.09675, 0.02239),
    (0.2068, -0.09311, 0.02375), (0.1776, -0.09097, 0.02447),
)
VDD = 0.8

HOROWITZ_45NM = {"add_pJ": (0.03, 0.1), "mul_pJ": (0.2, 3.1), "add_um2": (36.0, 137.0), "mul_um2": (282.0, 3495.0)}
"""(8-bit, 32-bit) figures at 45 nm, Horowitz ISSCC 2014."""


def _index(node: float) -> float:
    if not NODES[-1] <= node <= NODES[0]:
        raise ValueError(f"technology node must be in [{NODES[-1]}, {NODES[0]}] nm, got {node:g}")
    for i in range(len(NODES) - 1):
        hi, lo = NODES[i], NODES[i + 1]
        if lo <= node <= hi:
            return i + (hi - node) / (hi - lo)
    return float(len(NODES) - 1)


def area_scale(from_nm: float, to_nm: float) -> float:
    """Factor multiplying an area designed at ``from_nm`` to get it at ``to_nm``."""
    x, y = _index(from_nm), _index(to_nm)
    x0, x1, fx = math.floor(x), math.ceil(x), x % 1
    y0, y1, fy = math.floor(y), math.ceil(y), y % 1
    A = AREA_SCALING
    return (A[x0][y0] * (1 - fx) * (1 - fy) + A[x0][y1] * (1 - fx) * fy + A[x1][y0] * fx * (1 - fy)
            + A[x1][y1] * fx * fy)


def _energy_factor(node: float, vdd: float) -> float:
    x = _index(node)
    x0, x1, f = math.floor(x), math.ceil(x), x % 1

    def poly(i):
        a, b, c = ENERGY_POLY[i]
        return a * vdd**2 + b * vdd + c

    return poly(x0) * (1 - f) + poly(x1) * f


def energy_scale(from_nm: float, to_nm: float, vdd: float = VDD) -> float:
    """Factor multiplying an energy (or leakage power) at ``from_nm`` to get it at ``to_nm``."""
    return _energy_factor(to_nm, vdd) / _energy_factor(from_nm, vdd)


def power_law(points: tuple[float, float], bits: float) -> float:
    """Value at ``bits`` of the power law through (8, points[0]) and (32, points[1])."""
    v8, v32 = points
    exponent = math.log(v32 / v8) / math.log(4.0)
    return v8 * (bits / 8.0) ** exponent
