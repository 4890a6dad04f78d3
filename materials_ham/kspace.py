"""Bloch sums and (batched) generalized eigen-solvers.

Global layouts (nao = number of spatial orbitals of the cell, atoms in order, each atom's
orbitals shell by shell):

* spinless matrices (S): (nao, nao);
* spinor matrices (H, H0): (2 nao, 2 nao), **spin-major globally**: index = s * nao + mu,
  so the spinor overlap is ``kron(eye(2), S)`` (S x I2 of CONVENTIONS.md).

X(k) = sum_R exp(+2 pi i k.R) X(R), k in reduced coordinates.
"""
from __future__ import annotations

import numpy as np

from .conventions import spin_view
from .errors import MaterialsHamError
from .sample import SPINOR, Sample


class OverlapNotPositiveDefinite(MaterialsHamError):
    """S(k) has a non-positive eigenvalue, so H(k) c = e S(k) c is ill-posed."""


def real_space_matrices(sample: Sample, name: str, flat: np.ndarray | None = None):
    """Dense matrices per lattice shift: returns (shifts (nR, 3) int, X_R (nR, N, N)).

    ``flat`` overrides the sample's own array for ``name`` (same layout), e.g. predictions.
    N is nao for S and 2 nao (spin-major) for H/H0.
    """
    flat = getattr(sample, name) if flat is None else np.asarray(flat)
    spinor = SPINOR[name]
    nao, off = sample.nao, sample.orbital_offsets
    shifts, inverse = np.unique(sample.edge_shift, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    N = 2 * nao if spinor else nao
    out = np.zeros((len(shifts), N, N), np.complex128 if spinor else np.float64)
    f = 4 if spinor else 1
    n = sample.orbitals_per_atom
    for e, ((i, j), r) in enumerate(zip(sample.edge_index, inverse)):
        a, b = sample.block_offsets[e] * f, sample.block_offsets[e + 1] * f
        ni, nj = n[i], n[j]
        if spinor:
            blk = spin_view(flat[a:b], ni, nj)
            for s1 in range(2):
                for s2 in range(2):
                    out[r, s1 * nao + off[i]:s1 * nao + off[i + 1], s2 * nao + off[j]:s2 * nao + off[j + 1]] = blk[s1, :, s2]
        else:
            out[r, off[i]:off[i + 1], off[j]:off[j + 1]] = flat[a:b].reshape(ni, nj)
    return shifts, out


def bloch_sum(shifts: np.ndarray, matrices: np.ndarray, kpts: np.ndarray) -> np.ndarray:
    """X(k) for each k: (K, N, N) complex from (nR, 3) shifts and (nR, N, N) matrices."""
    kpts = np.atleast_2d(np.asarray(kpts, float))
    phase = np.exp(2j * np.pi * kpts @ shifts.T)  # (K, nR)
    return np.einsum("kr,rab->kab", phase, matrices, optimize=True)


def bloch(sample: Sample, name: str, kpts, flat: np.ndarray | None = None) -> np.ndarray:
    """Convenience: X(k) of matrix ``name`` of a sample at ``kpts`` (K, 3) -> (K, N, N)."""
    shifts, mats = real_space_matrices(sample, name, flat)
    return bloch_sum(shifts, mats, kpts)


def cholesky_overlap(Sk: np.ndarray) -> np.ndarray:
    """Batched Cholesky factor L (S = L L^H) of (K, n, n) overlaps; clear error if not PD."""
    try:
        return np.linalg.cholesky(Sk)
    except np.linalg.LinAlgError:
        w = np.linalg.eigvalsh(Sk).min()
        raise OverlapNotPositiveDefinite(f"S(k) is not positive definite (smallest eigenvalue {w:.3e})") from None


def eigh_spinor(Hk: np.ndarray, Sk: np.ndarray, *, vectors: bool = False, L: np.ndarray | None = None,
                dual: bool = False):
    """Solve H(k) c = e (S(k) x I2) c for spin-major spinor H (K, 2n, 2n) and spinless S (K, n, n).

    Returns eigenvalues (K, 2n) ascending, and with ``vectors=True`` also the
    S-orthonormal eigenvectors (K, 2n, 2n) as columns.  ``L`` may pass a precomputed
    Cholesky factor of S (see :func:`cholesky_overlap`) to reuse across calls.  With ``dual=True``
    the vectors returned are (S(k) x I2) c = L v instead (v: the eigenvectors of L^-1 H L^-H),
    formed without S^-1: well conditioned where c is not (S nearly singular).
    """
    Hk = np.atleast_3d(Hk)
    if L is None:
        L = cholesky_overlap(np.atleast_3d(Sk))
    n = L.shape[-1]
    Linv = np.linalg.inv(L)
    Lh = np.conj(np.swapaxes(Linv, -1, -2))
    A = np.empty_like(Hk, dtype=np.complex128)
    for s1 in range(2):
        for s2 in range(2):
            A[:, s1 * n:(s1 + 1) * n, s2 * n:(s2 + 1) * n] = Linv @ Hk[:, s1 * n:(s1 + 1) * n, s2 * n:(s2 + 1) * n] @ Lh
    A = 0.5 * (A + np.conj(np.swapaxes(A, -1, -2)))
    if not (vectors or dual):
        return np.linalg.eigvalsh(A)
    w, v = np.linalg.eigh(A)
    c = np.empty_like(v)
    for s in range(2):
        c[:, s * n:(s + 1) * n, :] = (L if dual else Lh) @ v[:, s * n:(s + 1) * n, :]
    return w, c


def band_energies(sample: Sample, kpts, name: str = "H", flat: np.ndarray | None = None) -> np.ndarray:
    """Eigenvalues (K, 2 nao) in eV of spinor matrix ``name`` with the sample's S at ``kpts``."""
    Hk = bloch(sample, name, kpts, flat)
    Sk = bloch(sample, "S", kpts)
    return eigh_spinor(Hk, Sk)


def monkhorst_pack(size, gamma_centered: bool = True) -> np.ndarray:
    """(N, 3) reduced k-points of a size[0] x size[1] x size[2] grid."""
    size = np.asarray(size, int)
    axes = [np.arange(n) / n + (0.0 if gamma_centered or n % 2 else 0.5 / n) for n in size]
    return np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T


def is_time_reversal_invariant(kpts, tol: float = 1e-8) -> np.ndarray:
    """(K,) True where k == -k modulo a reciprocal lattice vector (2k integer)."""
    twok = 2 * np.atleast_2d(kpts)
    return np.all(np.abs(twok - np.round(twok)) < tol, axis=1)
