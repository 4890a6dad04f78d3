"""Shared checks of the format tests: crystal-symmetry equivariance of real-space blocks.

A block convention (orbital order, signs, spin layout, the sign of R) is right exactly when the
blocks of a real calculation transform under every space-group operation of the crystal as
X_{g(i) g(j)}(R') = D_i X_ij(R) D_j^dagger, with D the project's Wigner-D (x SU(2) for spinors,
x (-1)^l for improper operations).  A wrong permutation or sign inside a shell, or spin
interleaving mistaken for spin-major, breaks this by the size of the matrix elements.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
EXTERNAL_LOCAL = DATA / "external"
EXTERNAL_SHARED = ROOT.parent / "shared" / "external"


def external_case(name: str, *, local_only: bool = False) -> Path | None:
    """The case folder: the copy in tests/data/external, else ../shared/external (None if absent)."""
    for base in ((EXTERNAL_LOCAL,) if local_only else (EXTERNAL_LOCAL, EXTERNAL_SHARED)):
        if (base / name).is_dir():
            return base / name
    return None


def symmetry_operations(crystal, symprec: float = 1e-4):
    """(W (3,3) int, t (3,), Cartesian rotation (3,3)) of every space-group operation."""
    import spglib

    A = crystal.cell
    frac = crystal.positions @ np.linalg.inv(A)
    ds = spglib.get_symmetry((A, frac, crystal.numbers), symprec=symprec)
    out = []
    for W, t in zip(ds["rotations"], ds["translations"]):
        out.append((W, t, A.T @ W @ np.linalg.inv(A.T)))
    return out


_VECTORS = np.random.default_rng(0).normal(size=(24, 3))


def _wigner(l: int, rotation) -> np.ndarray:
    """Real Wigner-D of the project's harmonics, Y_l(R v) = D Y_l(v), fitted on 24 directions (exact
    to ~1e-14; agrees with ``rotations.wigner_d`` and is much cheaper for many rotations)."""
    from materials_ham.rotations import real_spherical_harmonics

    y0 = real_spherical_harmonics(l, _VECTORS)
    y1 = real_spherical_harmonics(l, _VECTORS @ np.asarray(rotation).T)
    return np.linalg.lstsq(y0, y1, rcond=None)[0].T


def symmetry_deviation(crystal, atom_ls, blocks: dict, *, spinor: bool, symprec: float = 1e-4) -> dict:
    """Max |X_{g(i)g(j)}(R') - D_i X_ij(R) D_j^dagger| over all operations and blocks.

    ``blocks`` {(i, j, R): array}, (n_i, n_j) real or (2 n_i, 2 n_j) spin-major with ``spinor``.
    Returns the deviation, the largest |X|, the number of operations and of image blocks that are
    missing although their source is non-negligible.  Vectorised per atom pair.
    """
    from materials_ham.rotations import su2

    A = crystal.cell
    frac = crystal.positions @ np.linalg.inv(A)
    groups: dict = {}
    for (i, j, R), X in blocks.items():
        groups.setdefault((i, j), ([], []))
        groups[(i, j)][0].append(R)
        groups[(i, j)][1].append(X)
    stacked = {p: (np.array(rs, np.int64).reshape(-1, 3), np.stack(xs), {tuple(r): k for k, r in enumerate(rs)})
               for p, (rs, xs) in groups.items()}
    scale = max(float(np.abs(x).max()) for _, x, _ in stacked.values())
    worst, missing = 0.0, 0
    ops = symmetry_operations(crystal, symprec)
    for W, t, Rc in ops:
        det = round(float(np.linalg.det(Rc)))
        P = det * Rc
        img = frac @ W.T + t
        g, L = [], []
        for f in img:
            d = f - frac
            k = int(np.argmin(np.abs(d - np.round(d)).sum(axis=1)))
            g.append(k)
            L.append(np.round(d[k]).astype(np.int64))
        L = np.array(L)
        cache, D, wig = {}, [], {}
        for ls in atom_ls:
            if ls not in cache:
                for l in set(ls) - set(wig):
                    wig[l] = _wigner(l, P)
                d = scipy.linalg.block_diag(*(wig[l] for l in ls))
                if det < 0:
                    d = d * np.concatenate([[(-1.0) ** l] * (2 * l + 1) for l in ls])[:, None]
                cache[ls] = np.kron(su2(P), d) if spinor else d
            D.append(cache[ls])
        for (i, j), (rs, xs, _) in stacked.items():
            target = stacked.get((g[i], g[j]))
            r2 = rs @ W.T + L[j] - L[i]
            pos = [target[2].get(tuple(r)) if target is not None else None for r in r2.tolist()]
            have = np.array([p is not None for p in pos])
            if (~have).any():
                missing += int((np.abs(xs[~have]).reshape((~have).sum(), -1).max(axis=1) > 1e-6 * scale).sum())
            if have.any():
                expected = D[i] @ xs[have] @ D[j].conj().T
                got = target[1][[p for p in pos if p is not None]]
                worst = max(worst, float(np.abs(got - expected).max()))
    return {"max_dev": worst, "scale": scale, "n_ops": len(ops), "missing": missing}


def sample_blocks(sample, name: str) -> dict:
    return {(int(i), int(j), tuple(int(x) for x in r)): sample.block(name, e)
            for e, ((i, j), r) in enumerate(zip(sample.edge_index, sample.edge_shift))}


def atom_shells(sample) -> list:
    return [sample.basis[int(z)].ls for z in sample.crystal.numbers]
