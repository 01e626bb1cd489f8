"""Wire resistance (IR drop) of a resistive crossbar: exact circuit solve and the exact fast path.

Circuit convention (docs/architecture.md, "Crossbar circuit"): an R x C array. Row ``i`` is
driven at its left end by ``v[i]`` through ``r_src``; neighbouring cells of a row are joined by
``r_row``; cell ``(i, j)`` is a conductance ``G[i, j]`` from row node ``(i, j)`` to column node
``(i, j)``; neighbouring cells of a column are joined by ``r_col``; column ``j`` leaves its
bottom node (after the last row) through ``r_sink`` into a virtual ground at 0 V. The output of
column ``j`` is the current into that virtual ground. With every resistance zero this is
``I = v @ G``.

Two ways to get the column currents:

* :func:`solve_currents` assembles the nodal equations of the whole network (zero-ohm wires
  merge their end nodes) and solves them with a sparse LU factorisation, once per tile, for all
  reads. It is the reference: slow, general, obviously right.
* :func:`effective_conductance` exploits that the network is linear: for a programmed tile the
  currents are ``v @ M`` for an R x C matrix ``M``. ``M`` is computed exactly (up to rounding)
  by sweeping the array row by row, keeping the multi-port Norton equivalent of the rows
  already swept as seen from the column wires. After that, every read with IR drop costs the
  same matmul as an ideal read.
* :func:`perturbed_effective_conductance` reuses the exact ``M0`` of a nominal array ``G0``
  for a nearby array ``G`` (the same targets with programming variation and faults): the
  nominal attenuation ``M0 / G0`` corrected by the change of the first-order attenuation
  (:func:`first_order_attenuation`) from ``G0`` to ``G``. O(R C) per tile instead of
  O(R C^3); its error is second order in the wires and the deviation (measured in
  tests/test_wires.py and scripts/bench_programming.py).

Units: conductances in siemens, resistances in ohms, voltages in volts, currents in amperes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_finite_tensor, check_positive_tensor, check_real, check_tensor

__all__ = ["WireModel", "effective_conductance", "first_order_attenuation", "perturbed_effective_conductance",
           "nominal_wire_base", "solve_currents", "MAX_OHM", "MAX_RG"]

MAX_OHM = 1e6  # largest accepted wire, driver or sense resistance (ohm)
MAX_RG = 1e4  # largest accepted resistance x conductance: beyond, float64 solves lose ~1e-9 and more

_KERNELS = None  # crossbar_models._wire_kernels once imported; False where numba is missing


def _kernels(x: torch.Tensor):
    """The numba kernels of :mod:`crossbar_models._wire_kernels` for a tensor the sweep works
    on, or None (no numba, not on the CPU, not float32 / float64, or tracked by autograd):
    then the torch form of each step runs, with the same bits."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from . import _wire_kernels as kernels
            _KERNELS = kernels
        except Exception:  # numba missing or not able to compile: the torch steps do the same
            _KERNELS = False
    if (_KERNELS is False or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64)
            or (x.requires_grad and torch.is_grad_enabled())):
        return None
    return _KERNELS


@dataclass(frozen=True)
class WireModel:
    """Parasitic resistances of one crossbar, in ohms (each >= 0; zero means an ideal wire).

    r_row: row wire segment between neighbouring cells. r_col: column wire segment between
    neighbouring cells. r_src: output resistance of each row driver. r_sink: input resistance
    of each column's sense amplifier (between the bottom column node and virtual ground).
    """

    r_row: float = 0.0
    r_col: float = 0.0
    r_src: float = 0.0
    r_sink: float = 0.0

    def __post_init__(self):
        for name in ("r_row", "r_col", "r_src", "r_sink"):
            object.__setattr__(self, name, check_real(f"WireModel.{name}", getattr(self, name), low=0.0, high=MAX_OHM))

    @property
    def r_max(self) -> float:
        return max(self.r_row, self.r_col, self.r_src, self.r_sink)

    @property
    def is_ideal(self) -> bool:
        """True when every resistance is zero (then ``I = v @ G`` exactly)."""
        return self.r_row == 0 and self.r_col == 0 and self.r_src == 0 and self.r_sink == 0


def _check_G(G) -> torch.Tensor:
    G = check_tensor("G", G, min_dim=2)
    if G.shape[-1] < 1 or G.shape[-2] < 1:
        raise ValueError(f"G must have at least one row and one column, got shape {tuple(G.shape)}")
    check_positive_tensor("G", G, unit="siemens (a cell conductance)")
    return G


def _check_wires(wires, G: torch.Tensor | None = None) -> WireModel:
    if not isinstance(wires, WireModel):
        raise ValueError(f"wires must be a WireModel, got {type(wires).__name__}")
    if G is not None and G.numel() and wires.r_max * float(G.max()) > MAX_RG:
        raise ValueError(
            f"wire resistance x cell conductance = {wires.r_max:g} ohm x {float(G.max()):g} S = "
            f"{wires.r_max * float(G.max()):.3g} exceeds {MAX_RG:g}: the circuit is too ill-conditioned for an exact "
            "float64 solve (errors would exceed 1e-9); use smaller resistances or conductances")
    return wires


# --------------------------------------------------------------------------------------------
# Fast exact path: effective conductance by a row-by-row Norton sweep
# --------------------------------------------------------------------------------------------


def _series(g: torch.Tensor, r: float) -> torch.Tensor:
    """Conductance ``g`` in series with resistance ``r`` (handles g = inf and r = 0)."""
    return 1.0 / (1.0 / g + r)


def _row_chains(G: torch.Tensor, wires: WireModel):
    """Per-row quantities of every row wire, with the column ports held at 0 V.

    For a row with cells ``G_k`` (k = 0..C-1) along a wire of segments ``r_row`` fed through
    ``r_src``, returns (all shaped like G, float64):

    * ``yinv``: 1 / (conductance to ground at node k) = the diagonal of the inverse nodal
      matrix A of that row;
    * ``c``: cumulative log of the attenuation of a voltage travelling right-to-left between
      neighbouring nodes, so that ``inv(A)[j, k] = yinv[max(j,k)] * exp(-|c[k] - c[j]|)``;
    * ``u``: node voltages for a unit source voltage (columns grounded), so the current the
      row injects into column port k is ``G_k * u_k``.
    """
    r, r_src = wires.r_row, wires.r_src
    C = G.shape[-1]
    g_in = float("inf") if r_src == 0 else 1.0 / r_src
    left = torch.empty_like(G)  # conductance to ground seen leftwards from node k (excl. G_k)
    right = torch.empty_like(G)  # ... rightwards
    kern = _kernels(G)
    if kern is not None:  # the same recurrences in one compiled pass (and u below)
        u = torch.empty_like(G)
        scalar = G.numpy().dtype.type
        kern.row_chains(G.numpy(), scalar(r), scalar(r_src), scalar(g_in), left.numpy(), right.numpy(), u.numpy())
    else:
        left[..., 0] = g_in
        for k in range(1, C):
            left[..., k] = _series(G[..., k - 1] + left[..., k - 1], r)
        right[..., C - 1] = 0.0
        for k in range(C - 2, -1, -1):
            right[..., k] = _series(G[..., k + 1] + right[..., k + 1], r)
    y = G + left + right
    yinv = 1.0 / y
    if r == 0:
        logrho = torch.zeros_like(G)
    else:
        logrho = -torch.log1p(r * (G + left))
        if r_src == 0:
            logrho[..., 0] = 0.0  # node 0 is pinned to the source; handled by zeroing below
    c = torch.cumsum(logrho, dim=-1) - logrho  # exclusive cumulative sum
    if kern is None:  # voltages for a unit source: divider through r_src, then along the row
        F = G + right
        u = torch.empty_like(G)
        u[..., 0] = 1.0 / (1.0 + r_src * F[..., 0])
        for k in range(1, C):
            u[..., k] = u[..., k - 1] / (1.0 + r * F[..., k])
    return yinv, c, u


def _row_coupling_factors(G, yinv, c, pinned_first: bool):
    """Factors (alpha, beta) with ``Q = diag(G) - sym(alpha_j * beta_k for j <= k)``.

    Q is the Kron-reduced conductance matrix of one row wire between its C column ports
    (source grounded): ``Q = D - D inv(A) D`` with ``inv(A)[j, k] = yinv[k] exp(c[k] - c[j])``
    for j <= k. Splitting the exponential into ``exp(-c_j) * exp(c_k)`` turns the dense C x C
    construction into outer products; a per-row shift keeps both factors finite. Returns None
    when the attenuation along a row is too extreme for that split (then use the direct form).
    """
    shift = 0.5 * (c[..., :1] + c[..., -1:])
    if bool(((c - shift).abs() > 600).any()):
        return None
    alpha = G * torch.exp(shift - c)
    beta = G * yinv * torch.exp(c - shift)
    if pinned_first:
        alpha[..., 0] = 0.0  # node 0 pinned to the source: no coupling through it
        beta[..., 0] = 0.0
    return alpha, beta


def _row_conductance(Gi, yinv_i, c_i, factors_i, upper, pinned_first: bool):
    """Kron-reduced conductance matrix (n, C, C) between the column ports of one row."""
    if factors_i is not None:
        a, b = factors_i
        ab = a.neg().unsqueeze(-1) * b.unsqueeze(-2)  # -a_j b_k (negation and products exact)
        K = torch.where(upper, ab, ab.mT)  # b_j a_k below the diagonal: the same products
    else:  # direct form, safe for any attenuation
        diff = c_i.unsqueeze(-2) - c_i.unsqueeze(-1)  # [j, k] = c_k - c_j
        ymax = torch.where(upper, yinv_i.unsqueeze(-2), yinv_i.unsqueeze(-1))
        K = Gi.unsqueeze(-1) * ymax * torch.exp(-diff.abs()) * Gi.unsqueeze(-2)
        if pinned_first:
            K[..., 0, :] = 0.0
            K[..., :, 0] = 0.0
        K = K.neg_()
    K.diagonal(dim1=-2, dim2=-1).add_(Gi)
    return K


def _spd_inverse(A: torch.Tensor, leaf: int = 32) -> torch.Tensor:
    """Inverse of a batch of well-conditioned symmetric positive definite matrices.

    Block recursion on the Schur complement (no pivoting needed for SPD), so almost all the
    work is batched matrix products, which run several times faster than small batched
    LAPACK calls on a CPU. Used for ``I + r N`` whose eigenvalues are all >= 1.
    """
    m = A.shape[-1]
    if m <= leaf:
        return torch.linalg.inv_ex(A)[0]
    h = m // 2
    A11, A12, A22 = A[..., :h, :h], A[..., :h, h:], A[..., h:, h:]
    X11 = _spd_inverse(A11, leaf)
    T = X11 @ A12
    Y = _spd_inverse(A22 - A12.mT @ T, leaf)  # inverse of the Schur complement
    U = T @ Y
    out = torch.empty_like(A)  # the four blocks written in place (no concatenated copies)
    out[..., :h, :h] = X11 + U @ T.mT
    torch.neg(U, out=out[..., :h, h:])
    out[..., h:, :h] = out[..., :h, h:].mT
    out[..., h:, h:] = Y
    return out


def effective_conductance(G: torch.Tensor, wires: WireModel, *, chunk: int = 64,
                          precision: str = "float64", in_place: bool = False) -> torch.Tensor:
    """Exact effective conductance ``M`` (same shape as ``G``) with ``v @ M == solve_currents``.

    G: (..., R, C) cell conductances in siemens, all finite and > 0. Leading dimensions are
    independent tiles, solved together (``chunk`` tiles at a time to bound memory). Returns M
    in G's dtype; the sweep itself runs in ``precision``: ``float64`` (exact to ~1e-12) or
    ``float32`` (4-5x faster on 64x64 and 128x128 tiles at the rram preset's wires; every
    element of M within 2.1e-6 relative of the float64 sweep on 64x64 tiles, 1.5e-5 on
    128x128, column currents within 6.8e-7 / 8.1e-6: measured by scripts/bench_programming.py
    and tests/test_wires.py).

    The sweep goes down the rows keeping, at the current row of column nodes, the Norton
    equivalent of everything above: a C x C conductance matrix N and the short-circuit
    currents J (C per input row). Adding a row adds its Kron-reduced conductance Q_i to N
    and its injection to J; moving one column segment down replaces N by
    ``(I + r_col N)^-1 N`` and J by ``(I + r_col N)^-1 J`` (:func:`_through_resistance`: a
    truncated Neumann series on real arrays, else a blocked inverse); at the bottom the
    sense resistance does the same once more, and J (C x R) is M transposed.
    Cost: R steps of a product or two (or one C x C inverse) of C x C matrices, O(R C^3)
    per tile, once per programmed tile; every read afterwards is a plain matmul.

    ``in_place``: write M over G, chunk by chunk, when G is contiguous (a whole layer's
    cells are then held once); use the returned tensor either way.
    """
    G = _check_G(G)
    wires = _check_wires(wires, G)
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")
    work = torch.float64 if precision == "float64" else torch.float32
    own = in_place and G.is_contiguous()
    if wires.is_ideal:
        return G if own else G.clone()
    *lead, R, C = G.shape
    flat = G.reshape(-1, R, C)
    out = flat if own else torch.empty_like(flat)  # (a chunk is written once its sweep is done)
    for s in range(0, flat.shape[0], chunk):
        out[s : s + chunk] = _sweep(flat[s : s + chunk].to(work), wires).to(G.dtype)
    return out.reshape(*lead, R, C)


def first_order_attenuation(G: torch.Tensor, wires: WireModel) -> torch.Tensor:
    """``M / G`` to first order in the wire resistances, (..., R, C) like ``G``.

    With 1 V on row i alone, cell (i, j) passes G_ij to first order. Its row node sits below
    the source by r_src times the row's whole current plus r_row times the current through
    each row segment before it (segment m carries the cells at columns >= m); its column
    node sits above ground by what cell (i, j) sends down the column: r_sink G_ij plus r_col
    G_ij per column segment below row i. Every other cell (i', j) of that column then sees
    -G_i'j (r_sink + r_col (R - 1 - max(i, i'))) and leaks that much back out. Summed:

        1 - r_src S_i0 - r_row sum_{m=1..j} S_im - sum_i' G_i'j (r_sink + r_col (R - 1 - max(i, i')))

    with S_im = sum_{k>=m} G_ik; cumulative sums, O(R C) per tile.
    """
    R = G.shape[-2]
    row_pre = G.cumsum(-1)
    S = row_pre[..., -1:] - row_pre + G  # S[i, m] = sum_{k >= m} G[i, k]
    out = S.cumsum(-1).sub_(S[..., :1]).mul_(wires.r_row).add_(S[..., :1], alpha=wires.r_src)  # the row drop
    del row_pre, S
    below = (R - 1 - torch.arange(R, dtype=G.dtype, device=G.device)).unsqueeze(-1)  # column segments under row i
    weighted = below * G
    w_pre = weighted.cumsum(-2)
    after = w_pre[..., -1:, :] - w_pre  # sum_{i' > i} (R - 1 - i') G[i', j]
    del w_pre, weighted
    col = G.cumsum(-2).mul_(below).add_(after).mul_(wires.r_col).add_(G.sum(-2, keepdim=True), alpha=wires.r_sink)
    return out.add_(col).neg_().add_(1.0)


def perturbed_effective_conductance(G: torch.Tensor, base: torch.Tensor, wires: WireModel) -> torch.Tensor:
    """Effective conductance of an array ``G`` near a nominal array ``G0`` whose exact
    solution is known: ``G * (base + first_order_attenuation(G))`` with
    ``base = effective_conductance(G0) / G0 - first_order_attenuation(G0)`` (see
    :func:`nominal_wire_base`). Exact for G == G0; otherwise the error is second order
    in the deviation and the wires: at the rram preset's wires (64x64 tiles, 5 % variation,
    faults) column currents within ~3e-4 of the largest output of the exact solve; the error
    grows with the tile: 7.7e-4 on 128x128 tiles (scripts/bench_programming.py)."""
    att = first_order_attenuation(G.to(base.dtype), wires).add_(base)  # in base's precision (float32: ~1e-7)
    return G * att


def nominal_wire_base(G0: torch.Tensor, wires: WireModel, *, precision: str = "float64") -> torch.Tensor:
    """The part of the nominal array's exact attenuation that the first-order formula
    misses: ``effective_conductance(G0) / G0 - first_order_attenuation(G0)`` (computed once
    per network, reused by every chip instance)."""
    M0 = effective_conductance(G0, wires, precision=precision)
    return M0 / G0 - first_order_attenuation(G0, wires)


# Largest number of matrix products the series may take before the blocked inverse is cheaper
# (1 thread, 64 x 64 and 128 x 128 tiles: the inverse costs about 10 products in float32). In
# float64 the inverse's LAPACK leaves are relatively cheaper and even one product did not pay
# on 128 x 128 tiles, so float64 (the exact reference precision) always inverts.
_SERIES_MAX_PRODUCTS = {torch.float32: 6}


def _series_terms(N: torch.Tensor, r: float) -> int | None:
    """How many terms k the series of :func:`_through_resistance` takes for ``A = r N``, or None.

    The series gives ``X = N sum_{j<k} (-A)^j`` and so ``P = I - r X = sum_{j<=k} (-A)^j``.
    With ``q = ||A||_inf`` (the largest absolute row sum over the batch, which bounds every
    eigenvalue of the symmetric A) P's omitted terms sum to at most ``q^(k+1) / (1 - q)``; k is
    the first with that bound below an eighth of the dtype's epsilon: P is then as exact as
    the inverse rounded to the dtype, and X's relative truncation (``q^k / (1 - q)``, below
    eps / (8 q)) is 8x smaller than the eps / q that ``(I - P) / r`` loses by cancellation.
    None when q >= 0.5 (or not finite), when the k - 1 products would cost more than the
    blocked inverse, and in float64."""
    if N.dtype not in _SERIES_MAX_PRODUCTS:
        return None
    kern = _kernels(N) if N.is_contiguous() else None
    if not N.numel():
        q = 0.0
    elif kern is not None:
        q = r * kern.max_abs_row_sum(N.numpy())
    else:
        q = r * float(N.abs().sum(-1).amax())
    if not q < 0.5:
        return None
    if q == 0.0:
        return 1
    k = max(1, math.ceil(math.log(torch.finfo(N.dtype).eps / 8 * (1.0 - q)) / math.log(q)) - 1)
    return k if k - 1 <= _SERIES_MAX_PRODUCTS.get(N.dtype, 0) else None


def _through_resistance(N: torch.Tensor, r: float):
    """A resistance ``r`` in series with each column port of the Norton conductance ``N``.

    Returns (P, X): ``X = P N`` is the new conductance matrix, with ``P = (I + r N)^-1``
    carrying the short-circuit currents through (``J <- P J``). On real crossbars
    ``||r N||`` is ~1e-3 (r_col G R), so X comes from the Neumann series
    ``X = N - r N^2 + r^2 N^3 - ...`` (Horner: ``X <- N - r N X``, one fused product per
    term, :func:`_series_terms` many) and P is returned as None: apply it as
    ``J - r X J`` (:func:`_carry`), which keeps every current to its own relative precision
    where ``I - r X`` rounded would not (its diagonal 1 - ~1e-3 keeps only ~14 bits of the
    attenuation in float32). X is formed directly, not as ``(I - P) / r``, which cancels to a
    relative error eps / ||r N||. Otherwise (a long series) P from the blocked SPD inverse
    and ``X = (I - P) / r``."""
    k = _series_terms(N, r)
    if k is not None:
        X = N
        for _ in range(k - 1):
            X = torch.baddbmm(N, N, X, alpha=-r)
        return None, (X.clone() if X is N else X)
    A = N.mul(r)
    A.diagonal(dim1=-2, dim2=-1).add_(1.0)
    P = _spd_inverse(A)
    X = P.mul(-1.0 / r)
    X.diagonal(dim1=-2, dim2=-1).add_(1.0 / r)
    return P, X


def _carry(JT: torch.Tensor, P, X: torch.Tensor, r: float) -> torch.Tensor:
    """``J <- P J`` for the currents (transposed, J^T P: P is symmetric), in place when the
    series gave ``P = I - r X``."""
    if P is None:
        return JT.sub_(JT @ X, alpha=r)
    JT.copy_(JT @ P)
    return JT


def _add_row_conductance(N, Gi, yinv_i, c_i, factors_i, masks, pinned_first: bool, kern_args=None):
    """``N += Q_i`` in place: the Kron-reduced conductance of row i between the column ports
    (:func:`_row_conductance`), written as two masked outer products so that no transposed
    copy is read (about 2x cheaper than building the symmetric matrix), or in one compiled
    pass over N with the same products (about 2x cheaper again)."""
    if factors_i is None:
        return N.add_(_row_conductance(Gi, yinv_i, c_i, None, masks[0].bool(), pinned_first))
    a, b = factors_i
    if kern_args is not None:  # (kernels, alpha, beta, G, i): the whole arrays and the row
        kern, alpha, beta, G, i = kern_args
        kern.add_row_conductance(N.numpy(), alpha.numpy(), beta.numpy(), G.numpy(), i)
        return N
    upper, lower = masks  # float 0/1: j <= k, and j > k
    N.sub_((a.unsqueeze(-1) * upper) * b.unsqueeze(-2))  # a_j b_k above and on the diagonal
    N.sub_((b.unsqueeze(-1) * lower) * a.unsqueeze(-2))  # b_j a_k below: the transpose
    N.diagonal(dim1=-2, dim2=-1).add_(Gi)
    return N


def _sweep(G: torch.Tensor, wires: WireModel) -> torch.Tensor:
    n, R, C = G.shape
    yinv, c, u = _row_chains(G, wires)
    h = G * u  # (n, R, C): current row i injects into column port j per volt of v_i
    pinned = wires.r_src == 0 and wires.r_row > 0
    factors = _row_coupling_factors(G, yinv, c, pinned)
    upper = torch.ones(C, C, dtype=G.dtype, device=G.device).triu()
    masks = (upper, 1.0 - upper)

    kern = _kernels(G) if factors is not None and G.is_contiguous() else None

    def add_q(N, i):
        f = None if factors is None else (factors[0][:, i], factors[1][:, i])
        k = None if kern is None else (kern, factors[0], factors[1], G, i)
        return _add_row_conductance(N, G[:, i], yinv[:, i], c[:, i], f, masks, pinned, k)

    r_col, r_sink = wires.r_col, wires.r_sink
    N = add_q(torch.zeros(n, C, C, dtype=G.dtype, device=G.device), 0)  # Norton conductance of the rows swept
    JT = torch.zeros(n, R, C, dtype=G.dtype, device=G.device)  # Norton currents, per input row
    JT[:, 0] = h[:, 0]
    for i in range(1, R):
        if r_col > 0:  # one column segment down: J <- P J, N <- P N
            P, N = _through_resistance(N, r_col)
            _carry(JT[:, :i], P, N, r_col)
        N = add_q(N, i)
        JT[:, i] = h[:, i]
    if r_sink > 0:  # through the sense resistance into virtual ground
        _carry(JT, *_through_resistance(N, r_sink), r_sink)
    return JT


# --------------------------------------------------------------------------------------------
# Reference path: sparse nodal analysis of the full network
# --------------------------------------------------------------------------------------------


def _nodal_solve_tile(G: np.ndarray, V: np.ndarray, w: WireModel) -> np.ndarray:
    """Column currents (B, C) of one tile G (R, C) for reads V (B, R), by nodal analysis."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import splu

    R, C = G.shape
    B = V.shape[0]
    rc = R * C
    row = np.arange(rc).reshape(R, C)
    col = rc + np.arange(rc).reshape(R, C)
    src = 2 * rc + np.arange(R)  # fixed at v_i
    gnd = 2 * rc + R + np.arange(C)  # virtual grounds, fixed at 0 V
    n_nodes = 2 * rc + R + C

    # Every two-terminal element as (a, b, resistance).
    parts = [
        (src, row[:, 0], np.full(R, w.r_src)),
        (row[:, :-1].ravel(), row[:, 1:].ravel(), np.full(R * (C - 1), w.r_row)),
        (row.ravel(), col.ravel(), 1.0 / G.ravel()),
        (col[:-1, :].ravel(), col[1:, :].ravel(), np.full((R - 1) * C, w.r_col)),
        (col[-1, :], gnd, np.full(C, w.r_sink)),
    ]
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    res = np.concatenate([p[2] for p in parts])

    # Zero-ohm elements join their two nodes into one.
    short = res == 0
    adj = sp.coo_matrix((np.ones(short.sum()), (a[short], b[short])), shape=(n_nodes, n_nodes))
    _, group = connected_components(adj, directed=False)
    ga, gb, g = group[a[~short]], group[b[~short]], 1.0 / res[~short]
    n_groups = group.max() + 1

    # Voltages of fixed groups for every read: sources at v_i, virtual grounds at 0 V.
    fixed = np.zeros(n_groups, dtype=bool)
    fixed[group[src]] = True
    fixed[group[gnd]] = True
    Vfix = np.zeros((n_groups, B))
    Vfix[group[src]] = V.T

    lap = sp.coo_matrix(
        (np.concatenate([g, g, -g, -g]), (np.concatenate([ga, gb, ga, gb]), np.concatenate([ga, gb, gb, ga]))),
        shape=(n_groups, n_groups),
    ).tocsr()
    free = np.flatnonzero(~fixed)
    fix = np.flatnonzero(fixed)
    Vall = Vfix.copy()
    if free.size:
        L_ff = lap[free][:, free].tocsc()
        rhs = -(lap[free][:, fix] @ Vfix[fix])
        Vall[free] = splu(L_ff).solve(np.ascontiguousarray(rhs))

    # Current into each virtual ground = sum over elements entering its group from outside.
    out = np.zeros((C, B))
    gid_to_col = np.full(n_groups, -1)
    gid_to_col[group[gnd]] = np.arange(C)
    for x, y in ((ga, gb), (gb, ga)):  # element current from x into y
        j = gid_to_col[y]
        sel = (j >= 0) & (gid_to_col[x] != j)
        np.add.at(out, j[sel], (g[sel, None] * (Vall[x[sel]] - Vall[y[sel]])))
    return out.T


def solve_currents(G: torch.Tensor, v: torch.Tensor, wires: WireModel) -> torch.Tensor:
    """Column currents of crossbar reads, by nodal analysis of the whole resistor network.

    G: (..., R, C) conductances in siemens (finite, > 0); v: (..., B, R) row voltages in
    volts, leading dimensions matching G's (or broadcastable to them). Returns (..., B, C)
    amperes: the current into each column's virtual ground. This is the reference solver
    (sparse LU per tile, on the CPU, float64); use :func:`effective_conductance` for speed.
    """
    G = _check_G(G)
    v = check_tensor("v", v, min_dim=2)
    wires = _check_wires(wires, G)
    R, C = G.shape[-2:]
    if v.shape[-1] != R:
        raise ValueError(
            f"v must have R={R} entries in its last dimension (one voltage per row of G), "
            f"got shape {tuple(v.shape)}"
        )
    check_finite_tensor("v", v)
    try:
        lead = torch.broadcast_shapes(G.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"leading (tile) dimensions of G {tuple(G.shape[:-2])} and v {tuple(v.shape[:-2])} "
            "must match or broadcast"
        ) from None
    B = v.shape[-2]
    if B == 0:  # no reads: no currents
        return torch.zeros(*lead, 0, C, dtype=torch.promote_types(G.dtype, v.dtype), device=v.device)
    if wires.is_ideal:  # the ideal crossbar, exactly
        return v.to(torch.promote_types(G.dtype, v.dtype)) @ G.to(torch.promote_types(G.dtype, v.dtype))
    Gb = G.expand(*lead, R, C).reshape(-1, R, C).detach().to("cpu", torch.float64).numpy()
    vb = v.expand(*lead, B, R).reshape(-1, B, R).detach().to("cpu", torch.float64).numpy()
    out = np.stack([_nodal_solve_tile(Gt, vt, wires) for Gt, vt in zip(Gb, vb)])
    dtype = torch.promote_types(G.dtype, v.dtype)
    return torch.from_numpy(out).reshape(*lead, B, C).to(device=G.device, dtype=dtype)
