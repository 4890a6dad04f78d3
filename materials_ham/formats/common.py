"""Helpers shared by the importers/exporters: provenance records, closing a block set under
reversal, Hermiticity and time-reversal measurements, assembling a :class:`Sample`.

Blocks are dicts {(i, j, (R1, R2, R3)): array} in the project's conventions: S real (n_i, n_j);
H, H0 complex spin-major (2 n_i, 2 n_j), eV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import file_sha256
from ..errors import FormatError
from ..sample import Basis, Crystal, Sample

#: Largest allowed |X_ij(R) - X_ji(-R)^dagger| relative to max |X| before symmetrising (text files
#: are written with 5-8 significant digits, float32 h5 with 7; a layout error gives order 1).
HERMITICITY_TOLERANCE = 1e-4
#: A spinor H is called time-reversal symmetric (non-magnetic) when max |H - T H T^-1| is below this
#: fraction of max |H| (T = i sigma_y K; blocks: uu = conj(dd), ud = -conj(du)).
TIME_REVERSAL_TOLERANCE = 1e-5


def file_record(path, root: Path | None = None) -> dict:
    """Provenance record of one source file: path (relative to ``root`` when inside it), bytes, sha256."""
    path = Path(path)
    try:
        name = str(path.relative_to(root)) if root is not None else str(path)
    except ValueError:
        name = str(path)
    return {"path": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def spinor_from_spinless(block: np.ndarray) -> np.ndarray:
    """h x I2 in the spin-major layout: [[h, 0], [0, h]] (complex128), for a (n_i, n_j) block h."""
    z = np.zeros_like(block)
    return np.block([[block, z], [z, block]]).astype(np.complex128)


def complete_and_check(matrices: dict[str, dict], subject: str) -> dict:
    """Close every matrix's blocks under (i, j, R) -> (j, i, -R) in place; measure Hermiticity.

    Where only one block of a pair is stored, the partner is filled with its exact conjugate
    transpose.  Where both are stored, max |X_ij(R) - X_ji(-R)^dagger| is measured; above
    :data:`HERMITICITY_TOLERANCE` x max|X| it is a :class:`FormatError` (a misread layout, or R of
    the wrong sign).  Returns per matrix {filled_reverse_blocks, max_hermiticity_deviation}.
    """
    stats = {}
    for name, blocks in matrices.items():
        filled, dev = 0, 0.0
        scale = max((float(np.abs(b).max(initial=0)) for b in blocks.values()), default=0.0)
        for (i, j, r) in list(blocks):
            rev = (j, i, tuple(-x for x in r))
            if rev not in blocks:
                blocks[rev] = blocks[(i, j, r)].conj().T.copy()
                filled += 1
            else:
                dev = max(dev, float(np.abs(blocks[rev] - blocks[(i, j, r)].conj().T).max(initial=0)))
        if scale > 0 and dev > HERMITICITY_TOLERANCE * scale:
            raise FormatError(f"{name} is not Hermitian: max |X_ij(R) - X_ji(-R)^dagger| = {dev:.3e} against "
                              f"max |X| = {scale:.3e}; the file layout was not understood", subject=subject)
        stats[name] = {"filled_reverse_blocks": filled, "max_hermiticity_deviation": dev}
    return stats


def time_reversal_deviation(blocks: dict) -> float:
    """max |H - T H T^-1| / max |H| over spin-major spinor blocks (T = i sigma_y K).

    0 for a non-magnetic Hamiltonian (with or without SOC); of order the exchange splitting for a
    magnetic one.
    """
    dev, scale = 0.0, 0.0
    for b in blocks.values():
        n, m = b.shape[0] // 2, b.shape[1] // 2
        uu, ud, du, dd = b[:n, :m], b[:n, m:], b[n:, :m], b[n:, m:]
        dev = max(dev, float(np.abs(uu - dd.conj()).max(initial=0)), float(np.abs(ud + du.conj()).max(initial=0)))
        scale = max(scale, float(np.abs(b).max(initial=0)))
    return dev / scale if scale else 0.0


def spin_label(blocks: dict) -> tuple[str, float]:
    """Spin description of a spinor H from its blocks (decides whether Kramers checks apply)."""
    dev = time_reversal_deviation(blocks)
    if dev <= TIME_REVERSAL_TOLERANCE:
        return "non-magnetic (H is time-reversal symmetric)", dev
    return f"magnetic (H breaks time reversal: max |H - T H T^-1| = {dev:.2e} x max |H|)", dev


def assemble(crystal: Crystal, basis: dict[int, Basis], matrices: dict[str, dict], *, subject: str,
             **fields) -> tuple[Sample, dict]:
    """Sample from block dicts {'H': ..., 'S': ..., optional 'H0': ...}: edge set = union of
    supports closed under reversal, missing blocks zero, then made exactly Hermitian.

    Returns the sample and the Hermiticity statistics of :func:`complete_and_check`.
    """
    stats = complete_and_check(matrices, subject)
    keys = set().union(*(set(b) for b in matrices.values()))
    blocks = {k: {name: b[k] for name, b in matrices.items() if k in b} for k in keys}
    nao = int(sum(basis[int(z)].n_orbitals for z in crystal.numbers))
    fields.setdefault("ref_kpts", np.zeros((0, 3)))
    fields.setdefault("ref_eigenvalues", np.zeros((0, 2 * nao)))
    sample = Sample.from_blocks(crystal, basis, blocks, **fields)
    return sample.symmetrize(), stats


def convert_block(block: np.ndarray, perm_i, perm_j, f: int = 1, *, export: bool = False) -> np.ndarray:
    """Re-order and re-sign one block between an engine/format order and the project's.

    ``perm_i``/``perm_j``: ``(to_project, sign)`` of atoms i and j from
    :func:`~materials_ham.conventions.signed_permutation`; ``f`` = 2 for spin-major spinor blocks
    (the same orbital map in each spin block).  Import (default): project[to_project[e]] =
    sign[e] * engine[e]; ``export=True`` is the inverse.  Exact (a signed permutation).
    """
    (ti, si), (tj, sj) = perm_i, perm_j
    ni, nj = len(ti), len(tj)
    v = np.asarray(block).reshape(f, ni, f, nj)
    if export:
        out = v[:, ti][..., tj] * si[None, :, None, None] * sj[None, None, None, :]
    else:
        w = v * si[None, :, None, None] * sj[None, None, None, :]
        out = np.empty_like(w)
        out[:, ti] = w
        out2 = np.empty_like(w)
        out2[..., tj] = out
        out = out2
    return np.ascontiguousarray(out.reshape(f * ni, f * nj))


def engine_band_errors(sample: Sample, name: str = "H") -> list[dict]:
    """|eig(H(k), S(k) x I2) - engine's band energies| (meV) for each record of
    ``sample.info["engine_bands"]`` (the engine's lowest ``nb`` bands at its k-points): max, mean,
    number of k-points and bands per record."""
    from ..kspace import band_energies

    out = []
    for rec in sample.info.get("engine_bands", []):
        k = np.asarray(rec["kpts"], float)
        ref = np.asarray(rec["eigenvalues_ev"], float)
        e = band_energies(sample, k, name=name)[:, :ref.shape[1]]
        d = np.abs(e - ref) * 1e3
        out.append({"source": rec.get("source"), "section": rec.get("section"), "n_kpoints": len(k),
                    "n_bands": int(ref.shape[1]), "max_mev": float(d.max()), "mean_mev": float(d.mean())})
    return out
