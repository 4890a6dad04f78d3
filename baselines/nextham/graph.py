"""One structure, prepared for the model: graph, encoded H0, targets, index plans.

Built once per structure from a :class:`materials_ham.Sample` (numpy, float64) and kept in
memory as torch tensors.  Edge sets, all subsets of the sample's edges:

* **scored** edges: ``|r_ij| <`` :data:`materials_ham.conventions.HEADLINE_EDGE_CUTOFF` (8 A), on-site
  included: the entries the loss and the headline metric see.  Their blocks are concatenated into
  the *scored flat* arrays (complex, spin-major, the sample's layout restricted to these edges).
* **graph** edges: off-site scored edges with ``|r_ij| < cutoff`` (the model's radius): message
  passing runs on them and the model predicts their correction.
* **nodes**: atoms; the on-site block (i, i, 0) of atom i is node i's input and output.

Scored edges outside the graph keep H0 (the paper keeps H0 beyond its last range), apart from the
optional on-site-operator term 1/2 (S X + X S) of :mod:`.model`, which covers every scored edge.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from materials_ham.conventions import spin_view
from materials_ham.gauge import scored_edges, spinor_overlap

from .encoding import SlotTable, encode, plan_blocks, to_e3nn_frame


@dataclass
class OutputPlan:
    """Decoding plan of one shell-pair kind (l1, l2) onto the scored flat array.

    ``owner`` (P,) graph-edge or node index; ``start`` (P,) first column of the shell pair's slot
    in the *slot-ordered* dense vector (its 8 n1 n2 columns are contiguous there); ``flat``
    (P, 4 n1 n2) int32 positions in the scored flat array; ``slot`` (P,) slot number."""

    l1: int
    l2: int
    owner: torch.Tensor
    start: torch.Tensor
    flat: torch.Tensor
    slot: torch.Tensor


@dataclass
class OperatorGroup:
    """Scored edges with one block shape (2 n_i, 2 n_j), for the on-site-operator term
    1/2 (S X + X S): ``start`` (m,) first position of each edge's block in the scored flat array,
    ``i``/``j`` (m,) its atoms."""

    ni: int
    nj: int
    start: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor


@dataclass
class Graph:
    """Tensors of one structure (float tensors in ``dtype``; complex ones complex128).

    Geometry: ``numbers`` (N,), ``src``/``dst`` (Eg,) atom indices i, j of graph edges,
    ``vec`` (Eg, 3) r_j + R - r_i in Angstrom in e3nn's frame (y, z, x), ``length`` (Eg,) A.
    Inputs: ``x_node`` (N, D), ``x_edge`` (Eg, D) encoded H0 (eV / input_scale), grouped irreps.
    Scored flat arrays (F = sum over scored edges of 4 n_i n_j): ``h0``, ``h`` complex128 (F,) eV;
    ``s_spinor`` (F,) the overlap on spin-diagonal entries, 0 elsewhere; ``herm`` (F,) int32 position of
    each entry's Hermitian partner; ``entry_edge`` (F,) int32 scored-edge index of each entry.
    ``scored_shift`` (Es, 3) int lattice shifts; ``kpos`` (F,) int32 row-major position of each entry in
    the (2 nao, 2 nao) Bloch matrix.  Plans: ``edge_plans``/``node_plans`` (:class:`OutputPlan`).
    Trace labels: ``trace_edge`` (Eg, n_slots), ``trace_node`` (N, n_slots) of tr(dH dH^dagger) per
    shell pair in (eV / target_scale)^2, with masks ``trace_edge_mask``/``trace_node_mask``.
    On-site operator term: ``onsite_start`` (N,) first position of atom i's on-site block in the
    scored flat array, ``op_groups`` the scored edges by block shape (:class:`OperatorGroup`).
    """

    sid: str
    numbers: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    vec: torch.Tensor
    length: torch.Tensor
    x_node: torch.Tensor
    x_edge: torch.Tensor
    h0: torch.Tensor
    h: torch.Tensor
    s_spinor: torch.Tensor
    herm: torch.Tensor
    entry_edge: torch.Tensor
    scored_shift: torch.Tensor
    kpos: torch.Tensor
    nao: int
    fermi_level: float
    edge_plans: list
    node_plans: list
    trace_edge: torch.Tensor
    trace_edge_mask: torch.Tensor
    trace_node: torch.Tensor
    trace_node_mask: torch.Tensor
    onsite_start: torch.Tensor
    op_groups: list
    scored_take: np.ndarray          # (F,) positions of the scored entries in the sample's flat H
    n_full: int                      # length of the sample's flat H
    kpts: torch.Tensor = None        # (K, 3) reduced k-points of the reciprocal-space loss
    k_eps: torch.Tensor = None       # (K, 2 nao) reference eigenvalues (eV)
    k_vecs: torch.Tensor = None      # (K, 2 nao, 2 nao) S-orthonormal reference eigenvectors (columns)
    k_far: torch.Tensor = None       # (K, 2 nao, 2 nao) Bloch sum of H0 - H over unscored edges (eV)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def to(self, device) -> "Graph":
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, torch.Tensor):
                v = v.to(device)
            elif k.endswith("_plans"):
                v = [OutputPlan(p.l1, p.l2, *(t.to(device) for t in (p.owner, p.start, p.flat, p.slot))) for p in v]
            elif k == "op_groups":
                v = [OperatorGroup(q.ni, q.nj, *(t.to(device) for t in (q.start, q.i, q.j))) for q in v]
            out[k] = v
        return Graph(**out)


def _scored_take(sample, scored: np.ndarray) -> np.ndarray:
    off = 4 * sample.block_offsets
    starts, stops = off[:-1][scored], off[1:][scored]
    return np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) if len(scored) else np.zeros(0, np.int64)


def _scored_starts(sample, scored: np.ndarray) -> np.ndarray:
    """(Es,) first position of each scored edge's spinor block (4 n_i n_j entries) in the scored flat array."""
    return np.concatenate([[0], np.cumsum(4 * sample.block_sizes[scored])])[:-1].astype(np.int64)


def _hermitian_partner(sample, scored: np.ndarray) -> np.ndarray:
    """For the scored flat array: the position of entry (e, a, b)'s partner (rev(e), b, a)."""
    n = sample.orbitals_per_atom
    ni, nj = 2 * n[sample.edge_index[scored, 0]], 2 * n[sample.edge_index[scored, 1]]
    start = _scored_starts(sample, scored)
    where = {int(e): k for k, e in enumerate(scored)}
    out = []
    for k, e in enumerate(scored):
        r = where[int(sample.edge_reverse[e])]
        a, b = np.meshgrid(np.arange(ni[k]), np.arange(nj[k]), indexing="ij")
        out.append((start[r] + b * nj[r] + a).reshape(-1))   # reverse block has shape (nj, ni)
    return np.concatenate(out)


def _bloch_positions(sample, scored: np.ndarray) -> np.ndarray:
    """Row-major position in the (2 nao, 2 nao) spin-major Bloch matrix of every scored entry."""
    n = sample.orbitals_per_atom
    nao = int(n.sum())
    off = sample.orbital_offsets
    matrix = spin_view(np.arange(4 * nao * nao), nao, nao)
    out = [matrix[:, off[i]:off[i] + n[i], :, off[j]:off[j] + n[j]].reshape(-1) for i, j in sample.edge_index[scored]]
    return np.concatenate(out)


def _operator_groups(sample, scored: np.ndarray) -> tuple[np.ndarray, list]:
    """(onsite_start (N,), [OperatorGroup]) of the scored flat array (see :class:`Graph`)."""
    n = sample.orbitals_per_atom
    i, j = sample.edge_index[scored, 0], sample.edge_index[scored, 1]
    start = _scored_starts(sample, scored)
    onsite = sample.is_onsite[scored]
    onsite_start = np.zeros(len(n), np.int64)
    onsite_start[i[onsite]] = start[onsite]
    groups = []
    for ni, nj in sorted(set(zip(n[i].tolist(), n[j].tolist()))):
        sel = (n[i] == ni) & (n[j] == nj)
        groups.append(OperatorGroup(int(ni), int(nj), *(torch.from_numpy(np.ascontiguousarray(a[sel]).astype(np.int64))
                                                         for a in (start, i, j))))
    return onsite_start, groups


def kspace_reference(sample, scored_take: np.ndarray, grid: int):
    """Reference data of the reciprocal-space loss on a shifted ``grid``^3 Monkhorst-Pack mesh:
    (kpts (K, 3), eigenvalues (K, 2 nao) eV, eigenvectors (K, 2 nao, 2 nao), Bloch sum of H0 - H on
    the edges outside the scored set (K, 2 nao, 2 nao) eV), from all stored edges."""
    from materials_ham.kspace import bloch, eigh_spinor, monkhorst_pack

    kpts = monkhorst_pack((grid,) * 3, gamma_centered=False)
    eps, vecs = eigh_spinor(bloch(sample, "H", kpts), bloch(sample, "S", kpts), vectors=True)
    far = sample.H0 - sample.H
    far[scored_take] = 0.0
    return kpts, eps, vecs, bloch(sample, "H", kpts, flat=far)


def build_graph(sample, sid: str, table: SlotTable, *, cutoff: float, input_scale: float, target_scale: float,
                dtype=torch.float32, kspace_grid: int = 0) -> Graph:
    """Prepare one sample (see the module docstring).  ``cutoff`` (A): graph radius;
    ``kspace_grid`` > 0 also prepares the reference of the reciprocal-space loss."""
    lengths = sample.edge_lengths()
    onsite = sample.is_onsite
    scored = scored_edges(sample)
    s_len, s_on = lengths[scored], onsite[scored]
    in_graph = (~s_on) & (s_len < cutoff)
    graph_pos = np.full(len(scored), -1, np.int64)
    graph_pos[in_graph] = np.arange(in_graph.sum())
    node_of = np.where(s_on, sample.edge_index[scored, 0], -1)

    take = _scored_take(sample, scored)
    h0, h = sample.H0[take], sample.H[take]
    plans = plan_blocks(table, sample.crystal.numbers, sample.edge_index[scored])
    perm_inv = table.grouped_columns()
    dense = encode(table, plans, h0, len(scored)) / input_scale
    target = encode(table, plans, h - h0, len(scored)) / target_scale
    dense = dense[:, np.argsort(perm_inv)]          # slot order -> grouped irreps layout

    n_slots = table.n_slots
    n_atoms = len(sample.crystal)
    trace = np.zeros((len(scored), n_slots))
    mask = np.zeros((len(scored), n_slots), bool)
    edge_plans, node_plans = [], []
    for p in plans:
        d = 8 * (2 * p.l1 + 1) * (2 * p.l2 + 1)
        cols = p.column[:, None] + np.arange(d)[None, :]
        # per shell pair: tr(dH dH^dagger) = |encoded|^2 (orthogonal map)
        trace[p.edge, p.slot] = (target[p.edge[:, None], cols] ** 2).sum(axis=1)
        mask[p.edge, p.slot] = True
        for owner, plans_out in ((graph_pos, edge_plans), (node_of, node_plans)):
            sel = owner[p.edge] >= 0
            if sel.any():
                plans_out.append(OutputPlan(p.l1, p.l2, torch.from_numpy(owner[p.edge[sel]]),
                                            torch.from_numpy(p.column[sel]),
                                            torch.from_numpy(p.flat[sel].astype(np.int32)),
                                            torch.from_numpy(p.slot[sel])))
    x_node = np.zeros((n_atoms, table.dim))
    x_node[node_of[s_on]] = dense[s_on]
    t_node = np.zeros((n_atoms, n_slots))
    m_node = np.zeros((n_atoms, n_slots), bool)
    t_node[node_of[s_on]], m_node[node_of[s_on]] = trace[s_on], mask[s_on]

    e_sel = scored[in_graph]
    vec = sample.edge_vectors()[e_sel]
    f = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
    cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
    kdata = {}
    if kspace_grid:
        kpts, eps, vecs, far = kspace_reference(sample, take, kspace_grid)
        kdata = dict(kpts=torch.from_numpy(kpts), k_eps=torch.from_numpy(eps),
                     k_vecs=torch.from_numpy(vecs).to(cplx), k_far=torch.from_numpy(far).to(cplx))
    i64 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)  # noqa: E731
    i32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int32)  # noqa: E731 (big index arrays)
    onsite_start, op_groups = _operator_groups(sample, scored)
    return Graph(
        sid=str(sid), numbers=i64(sample.crystal.numbers),
        src=i64(sample.edge_index[e_sel, 0]), dst=i64(sample.edge_index[e_sel, 1]),
        vec=f(to_e3nn_frame(vec)), length=f(lengths[e_sel]),
        x_node=f(x_node), x_edge=f(dense[in_graph]),
        h0=torch.from_numpy(h0), h=torch.from_numpy(h), s_spinor=f(spinor_overlap(sample)[take]),
        herm=i32(_hermitian_partner(sample, scored)),
        entry_edge=i32(np.repeat(np.arange(len(scored)), 4 * sample.block_sizes[scored])),
        scored_shift=i64(sample.edge_shift[scored]), kpos=i32(_bloch_positions(sample, scored)),
        nao=int(sample.nao), fermi_level=float(sample.fermi_level),
        edge_plans=edge_plans, node_plans=node_plans,
        trace_edge=f(trace[in_graph]), trace_edge_mask=torch.from_numpy(mask[in_graph]),
        trace_node=f(t_node), trace_node_mask=torch.from_numpy(m_node),
        onsite_start=i64(onsite_start), op_groups=op_groups,
        scored_take=take, n_full=len(sample.H), **kdata,
    )
