"""Independent brute-force reference for crossbar circuits: dense modified nodal analysis.

Written separately from the package's solvers (which merge zero-ohm nodes and sweep rows):
here every zero-ohm wire is a 0 V voltage source and each column's virtual ground is an
ammeter (another 0 V source), and the whole system is solved densely with numpy.
"""

import numpy as np


def mna_column_currents(G, v, r_row, r_col, r_src, r_sink):
    """G: (R, C) siemens, v: (R,) volts -> (C,) amperes into each column's virtual ground."""
    G = np.asarray(G, dtype=float)
    R, C = G.shape
    names = {}

    def node(key):
        return names.setdefault(key, len(names))

    res, vsrc = [], []  # (a, b, ohm) with node -1 = ground; (plus, minus, volts)

    def element(a, b, ohm):
        if ohm == 0:
            vsrc.append((a, b, 0.0))
        else:
            res.append((a, b, ohm))

    for i in range(R):
        s = node(("src", i))
        vsrc.append((s, -1, float(v[i])))
        element(s, node(("row", i, 0)), r_src)
        for j in range(C - 1):
            element(node(("row", i, j)), node(("row", i, j + 1)), r_row)
        for j in range(C):
            element(node(("row", i, j)), node(("col", i, j)), 1.0 / G[i, j])
    for j in range(C):
        for i in range(R - 1):
            element(node(("col", i, j)), node(("col", i + 1, j)), r_col)
    meters = []
    for j in range(C):
        sense = node(("sense", j))
        element(node(("col", R - 1, j)), sense, r_sink)
        meters.append(len(vsrc))
        vsrc.append((sense, -1, 0.0))

    n, m = len(names), len(vsrc)
    A = np.zeros((n + m, n + m))
    z = np.zeros(n + m)
    for a, b, ohm in res:
        g = 1.0 / ohm
        for p, q in ((a, b), (b, a)):
            if p >= 0:
                A[p, p] += g
                if q >= 0:
                    A[p, q] -= g
    for k, (p, q, volts) in enumerate(vsrc):
        if p >= 0:
            A[p, n + k] += 1.0
            A[n + k, p] += 1.0
        if q >= 0:
            A[q, n + k] -= 1.0
            A[n + k, q] -= 1.0
        z[n + k] = volts
    x = np.linalg.solve(A, z)
    # The MNA current of source k flows from its + terminal through the source to its -
    # terminal; an ammeter from sense (+) to ground (-) thus carries the column current.
    return np.array([x[n + k] for k in meters])
