r"""Spinor Hamiltonian blocks <-> E(3) irreps, exactly (an orthogonal change of basis).

A spinor block between an atom with shells ``ls_i`` and one with shells ``ls_j`` (complex,
spin-major ``(2 n_i, 2 n_j)``, :mod:`materials_ham.sample`) splits into **shell pairs**
``(a, b)``: the sub-block ``X[s, t, m1, m2]`` of shape ``(2, 2, 2 l1 + 1, 2 l2 + 1)``.
Each shell pair is written in three orthonormal steps:

1. **Pauli**: ``A_p = tr_spin(sigma_p X) / sqrt(2)`` for ``p = 0, x, y, z``.  ``A_0`` is a spin
   scalar; ``(A_x, A_y, A_z)`` is an axial vector (spin is even under inversion).  It is ordered
   ``(y, z, x)``, the e3nn order of an ``l = 1`` irrep.
2. **Orbital Clebsch-Gordan**: ``l1 x l2 -> L = |l1 - l2| .. l1 + l2``, parity ``(-1)^(l1 + l2)``
   (``e3nn.o3.wigner_3j`` scaled to orthonormal columns).
3. **Spin coupling** of the vector part: ``L x 1 -> J = |L - 1| .. L + 1``, same parity.

The result is a complex vector ``c`` in a fixed irreps layout; its real and imaginary parts are
the two channels of a real feature vector ``x = [Re c, Im c]`` (both transform alike, since the
real Wigner-D matrices are real).  The whole map is one real orthogonal matrix per ``(l1, l2)``
(:func:`pair_map`), so ``decode(encode(X)) == X`` to float rounding.

Frame: blocks of the project (real spherical harmonics, m = -l..l, l = 1 ordered y, z, x) rotate
with e3nn's Wigner-D of the permuted rotation ``P R P^T`` (:mod:`materials_ham.rotations`), so a
model that feeds e3nn the permuted edge vectors :func:`to_e3nn_frame` is equivariant in the
project's frame.

**Slots** instead of padding: a shell of an atom is named by ``(l, zeta)`` (its angular momentum
and how many shells of that ``l`` come before it).  A shell pair is a *slot*
``(l1, zeta1, l2, zeta2)``.  The slot table of a model is the union over the elements it was built
for (:class:`SlotTable`), not a universal padded shell layout; an edge writes each of its shell
pairs into its slot's columns of a dense feature vector, and reads them back the same way.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

# Pauli matrices in the order (0, y, z, x): identity, then the spin vector in e3nn's l=1 order.
_PAULI_E3NN = np.array([
    [[1, 0], [0, 1]],
    [[0, -1j], [1j, 0]],
    [[1, 0], [0, -1]],
    [[0, 1], [1, 0]],
], dtype=np.complex128)

def to_e3nn_frame(vectors):
    """Cartesian vectors (..., 3) in Angstrom, project frame -> e3nn frame ``(y, z, x)``
    (:data:`materials_ham.rotations.PERMUTATION_TO_E3NN`)."""
    from materials_ham.rotations import PERMUTATION_TO_E3NN

    return np.asarray(vectors) @ PERMUTATION_TO_E3NN.T


def _parity(l1: int, l2: int) -> int:
    return 1 if (l1 + l2) % 2 == 0 else -1


@lru_cache(maxsize=None)
def pair_irreps(l1: int, l2: int) -> tuple[tuple[int, int], ...]:
    """The complex irreps ``(l, parity)`` of one shell pair, in the order of :func:`pair_map`:
    ``A_0``: L = |l1-l2|..l1+l2; then the spin vector: for each L, J = |L-1|..L+1.
    Total dimension ``4 (2 l1 + 1)(2 l2 + 1)``."""
    p = _parity(l1, l2)
    out = [(L, p) for L in range(abs(l1 - l2), l1 + l2 + 1)]
    for L in range(abs(l1 - l2), l1 + l2 + 1):
        out += [(J, p) for J in range(abs(L - 1), L + 2)]
    return tuple(out)


def _cg(l1: int, l2: int, l3: int) -> np.ndarray:
    """Orthonormal real Clebsch-Gordan coefficients (2l1+1, 2l2+1, 2l3+1) in e3nn's basis."""
    import torch
    from e3nn import o3

    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy() * np.sqrt(2 * l3 + 1)


@lru_cache(maxsize=None)
def pair_map(l1: int, l2: int) -> np.ndarray:
    """Real orthogonal matrix ``W`` (8 n1 n2, 8 n1 n2), float64, with n = 2l+1.

    ``x = W @ concat(Re X.ravel(), Im X.ravel())`` for a shell-pair block ``X`` of shape
    ``(2, 2, n1, n2)`` (spin s, spin t, m1, m2), eV; ``x`` is laid out as ``[Re c, Im c]`` with
    ``c`` in the irreps order of :func:`pair_irreps`.  The inverse is ``W.T``.
    """
    n1, n2 = 2 * l1 + 1, 2 * l2 + 1
    # Pauli: A[p, m1, m2] = sum_st sigma_p[t, s] X[s, t, m1, m2] / sqrt(2)
    pauli = np.einsum("pts,mn,MN->pmMstnN", _PAULI_E3NN, np.eye(n1), np.eye(n2)).reshape(4 * n1 * n2, 4 * n1 * n2)
    pauli = pauli / np.sqrt(2.0)
    rows = []
    Ls = range(abs(l1 - l2), l1 + l2 + 1)
    cg = {L: _cg(l1, l2, L) for L in Ls}
    eye_a = np.zeros((4, n1 * n2, 4 * n1 * n2))
    for p in range(4):
        eye_a[p, :, p * n1 * n2:(p + 1) * n1 * n2] = np.eye(n1 * n2)
    for L in Ls:                                   # spin scalar
        rows.append(cg[L].reshape(n1 * n2, 2 * L + 1).T @ eye_a[0])
    for L in Ls:                                   # spin vector: orbital L, then L x 1 -> J
        # a[M, c] = sum C_L[m1 m2 M] A_{1+c}[m1 m2]; as rows over the Pauli coefficients
        a = np.stack([cg[L].reshape(n1 * n2, 2 * L + 1).T @ eye_a[1 + c] for c in range(3)], axis=1)
        for J in range(abs(L - 1), L + 2):
            rows.append(np.einsum("McJ,Mcx->Jx", _cg(L, 1, J), a))
    C = np.concatenate(rows, axis=0) @ pauli       # complex (4 n1 n2, 4 n1 n2), unitary
    W = np.block([[C.real, -C.imag], [C.imag, C.real]])
    return W


@dataclass(frozen=True)
class SlotTable:
    """The shell-pair slots of a model: ``slots[k] = (l1, zeta1, l2, zeta2)``, with the offset of
    each slot's features in the dense vector (``offsets``, length n_slots + 1) and its dimension
    ``8 (2 l1 + 1)(2 l2 + 1)``.  Built from per-element shell lists (``{Z: ls}``)."""

    shells: dict = field(hash=False)                 # {Z: tuple of l}
    slots: tuple = ()
    offsets: tuple = ()

    @classmethod
    def from_shells(cls, shells: dict) -> "SlotTable":
        labels = set()
        for ls in shells.values():
            labels.update(_shell_labels(ls))
        labels = sorted(labels)
        slots = tuple((l1, k1, l2, k2) for (l1, k1) in labels for (l2, k2) in labels)
        dims = [8 * (2 * s[0] + 1) * (2 * s[2] + 1) for s in slots]
        return cls({int(z): tuple(int(l) for l in ls) for z, ls in shells.items()}, slots,
                   tuple(np.concatenate([[0], np.cumsum(dims)]).tolist()))

    @property
    def dim(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    def irreps(self):
        """The e3nn ``Irreps`` of the dense vector (not simplified: slot after slot)."""
        from e3nn import o3

        out = []
        for (l1, _, l2, _) in self.slots:
            ir = [(1, (l, p)) for l, p in pair_irreps(l1, l2)]
            out += ir + ir                                # real parts, then imaginary parts
        return o3.Irreps(out)

    def _pieces(self):
        out, start = [], 0
        for (l1, _, l2, _) in self.slots:
            for _part in range(2):                        # real parts, then imaginary parts
                for l, p in pair_irreps(l1, l2):
                    out.append(((l, p), start))
                    start += 2 * l + 1
        return out

    def grouped_irreps(self):
        """e3nn ``Irreps`` of the dense vector with equal irreps merged, sorted by (l, parity)."""
        from e3nn import o3

        count = Counter(ir for ir, _ in self._pieces())
        return o3.Irreps([(count[ir], ir) for ir in sorted(count)])

    def grouped_columns(self) -> np.ndarray:
        """(dim,) int64: the position in the :meth:`grouped_irreps` layout of each column of the
        slot-ordered dense vector (e3nn stores ``mul x ir`` as (mul, 2l+1), multiplicity-major)."""
        pieces = self._pieces()
        counts = Counter(ir for ir, _ in pieces)
        base, seen, out = {}, {}, np.empty(self.dim, np.int64)
        total = 0
        for ir in sorted(counts):
            base[ir] = total
            total += counts[ir] * (2 * ir[0] + 1)
        for ir, start in pieces:
            u = seen.get(ir, 0)
            seen[ir] = u + 1
            d = 2 * ir[0] + 1
            out[start:start + d] = base[ir] + u * d + np.arange(d)
        return out

    def slot_index(self) -> dict:
        return {s: k for k, s in enumerate(self.slots)}

    def to_dict(self) -> dict:
        return {"shells": {str(z): list(ls) for z, ls in self.shells.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "SlotTable":
        return cls.from_shells({int(z): tuple(ls) for z, ls in d["shells"].items()})


def _shell_labels(ls) -> list[tuple[int, int]]:
    seen: dict[int, int] = {}
    out = []
    for l in ls:
        out.append((int(l), seen.get(int(l), 0)))
        seen[int(l)] = seen.get(int(l), 0) + 1
    return out


@dataclass
class PairPlan:
    """Where the shell pairs of one ``(l1, l2)`` kind sit, for a set of blocks.

    ``edge`` (P,) int64: the block (edge) of each shell pair; ``column`` (P,) int64: the first
    column of its slot in the dense vector; ``flat`` (P, 4 n1 n2) int64: positions of its
    entries ``X[s, t, m1, m2]`` in the flat complex block array; ``slot`` (P,) int64 slot number.
    """

    l1: int
    l2: int
    edge: np.ndarray
    column: np.ndarray
    flat: np.ndarray
    slot: np.ndarray


def plan_blocks(table: SlotTable, numbers: np.ndarray, edge_index: np.ndarray) -> list[PairPlan]:
    """Index plans for encoding/decoding the spinor blocks of the given edges.

    ``numbers`` (n_atoms,) atomic numbers; ``edge_index`` (E, 2) atom pairs (i, j) of the blocks, in
    the order they appear in the flat block array (each block ``(2 n_i, 2 n_j)``, row-major, spin
    major).  Returns one :class:`PairPlan` per shell-pair kind ``(l1, l2)`` present.
    """
    from materials_ham.conventions import shell_sizes, spin_view

    index = table.slot_index()
    per_z = {}
    for z in np.unique(numbers).tolist():
        if z not in table.shells:
            raise KeyError(f"the model has no shells for Z={z}")
        ls = table.shells[z]
        sizes = shell_sizes(ls)
        per_z[z] = (ls, _shell_labels(ls), np.concatenate([[0], np.cumsum(sizes)])[:-1], int(sizes.sum()))
    ni = np.array([per_z[int(numbers[i])][3] for i in edge_index[:, 0]], np.int64)
    nj = np.array([per_z[int(numbers[j])][3] for j in edge_index[:, 1]], np.int64)
    start = np.concatenate([[0], np.cumsum(4 * ni * nj)])[:-1]
    groups: dict[tuple, list] = {}
    pairs = np.stack([numbers[edge_index[:, 0]], numbers[edge_index[:, 1]]], axis=1)
    for zi, zj in np.unique(pairs, axis=0).tolist():
        sel = np.nonzero((pairs[:, 0] == zi) & (pairs[:, 1] == zj))[0]
        ls_i, lab_i, off_i, n_i = per_z[zi]
        ls_j, lab_j, off_j, n_j = per_z[zj]
        for a, l1 in enumerate(ls_i):
            for b, l2 in enumerate(ls_j):
                n1, n2 = 2 * l1 + 1, 2 * l2 + 1
                # entries X[s, t, m1, m2] of this shell pair inside the block (spin layout: spin_view)
                local = spin_view(np.arange(4 * n_i * n_j), n_i, n_j)[
                    :, off_i[a]:off_i[a] + n1, :, off_j[b]:off_j[b] + n2].transpose(0, 2, 1, 3).reshape(-1)
                k = index[lab_i[a] + lab_j[b]]
                groups.setdefault((l1, l2), []).append((sel, start[sel][:, None] + local[None, :], k))
    plans = []
    for (l1, l2), items in sorted(groups.items()):
        edge = np.concatenate([it[0] for it in items])
        flat = np.concatenate([it[1] for it in items])
        slot = np.concatenate([np.full(len(it[0]), it[2], np.int64) for it in items])
        column = np.asarray(table.offsets, np.int64)[slot]
        plans.append(PairPlan(l1, l2, edge.astype(np.int64), column, flat.astype(np.int64), slot))
    return plans


def encode(table: SlotTable, plans: list[PairPlan], flat_blocks: np.ndarray, n_edges: int) -> np.ndarray:
    """Dense irreps features (n_edges, table.dim) float64 from flat complex spinor blocks (eV)."""
    out = np.zeros((n_edges, table.dim))
    for p in plans:
        W = pair_map(p.l1, p.l2)
        X = flat_blocks[p.flat]
        x = np.concatenate([X.real, X.imag], axis=1) @ W.T
        cols = p.column[:, None] + np.arange(W.shape[0])[None, :]
        out[p.edge[:, None], cols] = x
    return out


def decode(table: SlotTable, plans: list[PairPlan], features: np.ndarray, n_flat: int) -> np.ndarray:
    """Flat complex spinor blocks (n_flat,) from dense features (n_edges, table.dim): the inverse of
    :func:`encode` on the entries the plans cover (others are zero)."""
    out = np.zeros(n_flat, np.complex128)
    for p in plans:
        W = pair_map(p.l1, p.l2)
        cols = p.column[:, None] + np.arange(W.shape[0])[None, :]
        y = features[p.edge[:, None], cols] @ W
        h = y.shape[1] // 2
        out[p.flat] = y[:, :h] + 1j * y[:, h:]
    return out
