"""numba kernels of :mod:`crossbar_models.wires` (imported only there, and only when numba is
installed). They do the element-wise parts of the Norton sweep -- the recurrences along each
row wire and the row-by-row update of the Norton matrices -- which as torch calls are a few
hundred small operations per batch of tiles. Each kernel does the same float operations in
the same order as the torch form it replaces (in the dtype of its arrays: the scalars are
passed in that dtype), so results are bit-identical with and without numba
(tests/test_wires.py)."""

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def row_chains(G, r, r_src, g_in, left, right, u):
    """The recurrences of :func:`crossbar_models.wires._row_chains` for G (n, R, C), written
    into left, right and u (same shape). ``r``, ``r_src``, ``g_in`` are scalars of G's dtype.
    The inner loop runs across the rows of a tile (independent recurrences), the outer one
    along the wire."""
    n, R, C = G.shape
    one = G.dtype.type(1.0)
    for t in range(n):
        for i in range(R):
            left[t, i, 0] = g_in
            right[t, i, C - 1] = 0.0
        for k in range(1, C):
            for i in range(R):
                left[t, i, k] = one / (one / (G[t, i, k - 1] + left[t, i, k - 1]) + r)
        for k in range(C - 2, -1, -1):
            for i in range(R):
                right[t, i, k] = one / (one / (G[t, i, k + 1] + right[t, i, k + 1]) + r)
        for i in range(R):
            u[t, i, 0] = one / (one + r_src * (G[t, i, 0] + right[t, i, 0]))
        for k in range(1, C):
            for i in range(R):
                u[t, i, k] = u[t, i, k - 1] / (one + r * (G[t, i, k] + right[t, i, k]))


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def add_row_conductance(N, a, b, g, i):
    """N[t, j, k] -= a[t, i, min(j, k)] * b[t, i, max(j, k)], then N[t, j, j] += g[t, i, j], in
    place: the Kron-reduced conductance of row i (factors a, b and cells g: (n, R, C)) added
    to the Norton matrices N (n, C, C) of a batch of tiles."""
    n, C, _ = N.shape
    for t in range(n):
        for j in range(C):
            aj = a[t, i, j]
            bj = b[t, i, j]
            for k in range(j):  # below the diagonal: b_j a_k
                N[t, j, k] -= bj * a[t, i, k]
            for k in range(j, C):  # on and above: a_j b_k
                N[t, j, k] -= aj * b[t, i, k]
            N[t, j, j] += g[t, i, j]


@njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "nsz"})
def max_abs_row_sum(N):
    """max over t, j of sum_k |N[t, j, k]| (the infinity norm over a batch; summed in any
    order, it only chooses how many series terms to take)."""
    n, C, _ = N.shape
    q = 0.0
    for t in range(n):
        for j in range(C):
            s = N.dtype.type(0.0)
            for k in range(C):
                s += abs(N[t, j, k])
            q = max(q, np.float64(s))
    return q
