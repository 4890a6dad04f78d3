"""The density operator of H0's own eigenstates, as real-space blocks: a second model input.

H - H0 is the change of the Kohn-Sham potential as the density relaxes from the superposition of
atomic densities to the self-consistent one, so it is driven by the charge that would flow.  H0
alone tells that only implicitly.  Its eigenstates, filled with the structure's valence electrons,
tell it directly: the first density the SCF would build.  This module gives that density as the
matrix of the density operator in the basis,

    rho_mu,nu(R) = <phi_mu,0 | rho | phi_nu,R>,   rho = sum_nk f_nk |psi_nk><psi_nk|,

i.e. rho(k) = S(k) C f C^dagger S(k) with the S-orthonormal eigenvectors C of H0(k) (spinor,
spin-major, with S x I2), and rho(R) = 1/K sum_k exp(-2 pi i k.R) rho(k) on a Gamma-centred grid,
the inverse of :func:`materials_ham.kspace.bloch_sum`.  It is the density matrix sandwiched by S:
bounded by |S| (in an S-orthonormal basis it is S^1/2 P S^1/2 with P a projector), where the bare
density matrix C f C^dagger is not (S^-1 is large for the nearly dependent dzp bases).

It transforms exactly like H0 (rotation: Wigner-D x SU(2) per block; parity; translation and atom
permutation leave it unchanged), so it is encoded like H0 (:mod:`.encoding`).  It needs nothing
the model would not have before an SCF: H0, S, and the number of valence electrons.

Units: rho is dimensionless (electrons); the Fermi-Dirac width is in eV, lengths in Angstrom.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from materials_ham.kspace import bloch_sum, eigh_spinor, monkhorst_pack, real_space_matrices


def density_grid(cell: np.ndarray, length: float) -> tuple[int, int, int]:
    """Gamma-centred k-grid with n_i = ceil(length / |a_i|) points along each reciprocal axis
    (rotation invariant: it depends only on the lattice vector lengths)."""
    return tuple(max(1, int(np.ceil(length / np.linalg.norm(a) - 1e-9))) for a in np.asarray(cell))


def fermi_occupations(eps: np.ndarray, n_electrons: float, width: float) -> tuple[np.ndarray, float]:
    """Fermi-Dirac occupations (same shape as ``eps`` (K, M), eV; each spinor state holds one
    electron, k-points equally weighted) holding ``n_electrons`` per cell, and the Fermi level (eV)."""
    if not 0 < n_electrons <= eps.shape[-1]:
        raise ValueError(f"{n_electrons:g} electrons do not fit in {eps.shape[-1]} spinor states")
    count = lambda mu: expit((mu - eps) / width).sum(axis=-1).mean()  # noqa: E731
    lo, hi = eps.min() - 20 * width, eps.max() + 20 * width
    for _ in range(200):                     # bisection: count(mu) is increasing
        mu = 0.5 * (lo + hi)
        lo, hi = (mu, hi) if count(mu) < n_electrons else (lo, mu)
        if hi - lo < 1e-12:
            break
    mu = 0.5 * (lo + hi)
    return expit((mu - eps) / width), mu


def density_kspace(sample, kpts: np.ndarray, width: float):
    """rho(k) (K, 2 nao, 2 nao) complex at ``kpts`` (K, 3) from H0 and S (see the module docstring),
    with S(k) (K, nao, nao) and the Fermi level of H0 (eV)."""
    Hk = bloch_sum(*real_space_matrices(sample, "H0"), kpts)
    Sk = bloch_sum(*real_space_matrices(sample, "S"), kpts)
    eps, W = eigh_spinor(Hk, Sk, dual=True)                     # W = (S(k) x I2) C, without S^-1
    f, mu = fermi_occupations(eps, sample.n_electrons, width)
    rho = (W * f[:, None, :]) @ np.conj(np.swapaxes(W, 1, 2))
    return rho, Sk, mu


def density_blocks(sample, edges: np.ndarray, *, width: float = 0.1, length: float = 12.0) -> np.ndarray:
    """rho on the blocks of ``edges`` (positions in the sample's edge list), concatenated in that
    order in the sample's flat spinor layout (sum over edges of 4 n_i n_j entries, complex, electrons).
    ``width``: Fermi-Dirac width (eV); ``length``: k-grid density (:func:`density_grid`)."""
    edges = np.asarray(edges, np.int64)
    if not len(edges):
        return np.zeros(0, np.complex128)
    kpts = monkhorst_pack(density_grid(sample.crystal.cell, length), gamma_centered=True)
    rho, _, _ = density_kspace(sample, kpts, width)
    shifts, which = np.unique(sample.edge_shift[edges], axis=0, return_inverse=True)
    phase = np.exp(-2j * np.pi * kpts @ shifts.T) / len(kpts)                       # (K, nR)
    rho_r = phase.T @ rho.reshape(len(kpts), -1)                                    # (nR, 4 nao^2)
    from .graph import _bloch_positions     # the spin-major position of every block entry in rho(R)

    shift_of_entry = np.repeat(which.reshape(-1), 4 * sample.block_sizes[edges])
    return rho_r[shift_of_entry, _bloch_positions(sample, edges)]
