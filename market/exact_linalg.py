"""Exact integer linear algebra on 0/1 coalition rows: null spaces and dual bases.

The sequential LPs' separation needs "1_S outside the span of the fixed rows" as an
exact integer disjunction (:func:`integer_null_basis`); the Kohlberg certificate needs
the dual basis of a basis of rows (:func:`integer_dual_basis`).  Both are exact:
fraction-free elimination over the integers, or a float inverse checked in integers.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["dual_basis_by_null_spaces", "extend_basis", "integer_dual_basis", "integer_null_basis",
           "null_basis_by_elimination"]


def extend_basis(basis, vector, tol=1e-9):
    """``basis`` (orthonormal columns) with the part of ``vector`` outside its span added
    as a unit column, or None if that part's norm is at most ``tol`` (``vector`` lies in
    the span, as far as floats tell). Projected twice: that keeps the columns orthonormal.
    The float rank test that picks rows and pivots; exact checks come after it."""
    resid = vector - basis @ (basis.T @ vector)
    resid -= basis @ (basis.T @ resid)
    norm = np.linalg.norm(resid)
    return None if norm <= tol else np.concatenate((basis, (resid / norm)[:, None]), axis=1)


def integer_null_basis(rows, n) -> np.ndarray:
    """Integer basis (n x d) of the null space of the fixed 0/1 rows, exactly.

    Rows are 0/1 (coalitions, unit vectors, the grand coalition), so Gauss-Jordan
    elimination over the rationals gives an exact basis: for each free column fc,
    b[fc] = 1 and b[pc] = -R[r, fc] at the pivot columns of the reduced row echelon
    form R, scaled by its denominators' lcm, so that ``b . 1_S`` is an integer and
    "not in the span" is the linear disjunction |b_k . 1_S| >= 1 for some k.  The
    elimination is fraction-free (integer rows, each divided by the gcd of its
    entries), so R[r, fc] = row_r[fc] / row_r[pc]: the same basis as rational
    arithmetic, several times faster than ``fractions.Fraction``.

    The same basis comes first from floats when they can be checked: leftmost pivot
    columns chosen greedily, b = (-det F_p^-1 F_f ; det I) rounded, kept only if
    F b = 0 holds in integers (then each column, divided by its gcd with b[fc] > 0,
    is the primitive vector of the elimination's, which is primitive too); otherwise
    the elimination runs (:func:`null_basis_by_elimination`).
    """
    fast = _null_basis_from_floats(rows, n)
    return fast if fast is not None else null_basis_by_elimination(rows, n)


def _null_basis_from_floats(rows, n):
    F = np.asarray(rows, dtype=float).reshape(-1, n)
    r = len(F)
    pivots, q = [], np.zeros((r, 0))
    for c in range(n):                     # leftmost independent columns, greedily
        extended = extend_basis(q, F[:, c])
        if extended is not None:
            pivots.append(c)
            q = extended
            if len(pivots) == r:
                break
    if len(pivots) != r:                   # dependent rows: not the Stages' case
        return None
    free = [c for c in range(n) if c not in set(pivots)]
    Fp = F[:, pivots]
    det = round(float(np.linalg.det(Fp))) if r else 1
    if det == 0 or abs(det) >= 2 ** 31:
        return None
    X = np.round(np.linalg.solve(Fp, F[:, free]) * det) if r else np.zeros((0, len(free)))
    if r and np.abs(X).max(initial=0) * n >= 2 ** 52:
        return None
    B = np.zeros((n, len(free)), dtype=np.int64)
    B[pivots] = -X.astype(np.int64)
    B[free, np.arange(len(free))] = det
    if (np.round(F).astype(np.int64) @ B).any():   # exactly, in integers
        return None
    g = np.gcd.reduce(np.abs(B), axis=0)
    return B // (np.where(B[free, np.arange(len(free))] < 0, -1, 1) * np.maximum(g, 1))


def null_basis_by_elimination(rows, n) -> np.ndarray:
    """:func:`integer_null_basis` by fraction-free Gauss-Jordan elimination (exact)."""
    mat = [[int(round(v)) for v in row] for row in rows]
    pivots, r = [], 0
    for c in range(n):
        piv = next((k for k in range(r, len(mat)) if mat[k][c] != 0), None)
        if piv is None:
            continue
        mat[r], mat[piv] = mat[piv], mat[r]
        top = mat[r]
        p = top[c]
        for k in range(len(mat)):
            f = mat[k][c]
            if k != r and f != 0:
                row = [a * p - f * b for a, b in zip(mat[k], top)]
                g = 0
                for v in row:
                    if v:
                        g = math.gcd(g, v)
                mat[k] = [v // g for v in row] if g > 1 else row
        pivots.append(c)
        r += 1
    free_cols = [c for c in range(n) if c not in pivots]
    basis = np.zeros((n, len(free_cols)), dtype=np.int64)
    for k, fc in enumerate(free_cols):
        parts = []              # (pivot column, numerator, positive denominator) of -R[r, fc]
        for row, pc in zip(mat, pivots):
            num, den = -row[fc], row[pc]
            if den < 0:
                num, den = -num, -den
            g = math.gcd(num, den)
            parts.append((pc, num // g, den // g))
        lcm = 1
        for _pc, _num, den in parts:
            lcm = lcm * den // math.gcd(lcm, den)
        basis[fc, k] = lcm
        for pc, num, den in parts:
            basis[pc, k] = num * (lcm // den)
    return basis


def integer_dual_basis(rows) -> np.ndarray:
    """Integer B with rows @ B diagonal and non-singular, exactly (``rows`` 0/1, square).

    Column k is orthogonal to every row but the k-th.  From the float inverse scaled
    by the determinant and rounded, kept only if the integer product checks out;
    otherwise column by column from the exact null space of the other rows
    (:func:`integer_null_basis`).
    """
    R = np.asarray(rows, dtype=np.int64)
    n = len(R)
    det = round(float(np.linalg.det(R)))
    if det != 0 and abs(det) < 2 ** 31:
        B = np.round(np.linalg.inv(R) * det)
        if np.abs(B).max() * n >= 2 ** 62:     # the integer check below would overflow
            return dual_basis_by_null_spaces(R)
        B = B.astype(np.int64)
        P = R @ B
        if (P == np.diag(np.diag(P))).all() and (np.diag(P) != 0).all():
            g = np.gcd.reduce(np.abs(B), axis=0)
            return B // np.maximum(g, 1)
    return dual_basis_by_null_spaces(R)


def dual_basis_by_null_spaces(rows) -> np.ndarray:
    """:func:`integer_dual_basis` the slow exact way: column k spans the null space of
    the other rows (fraction-free elimination; the fallback when the float inverse
    does not check out)."""
    R = np.asarray(rows, dtype=np.int64)
    n = len(R)
    cols = []
    for k in range(n):
        null = integer_null_basis(np.delete(R, k, axis=0).astype(float), n)
        if null.shape[1] != 1 or int(R[k] @ null[:, 0]) == 0:
            raise ValueError("rows are not independent (numerics)")
        cols.append(null[:, 0])
    return np.array(cols).T
