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
optional operator terms of :mod:`.model` (1/2 (S X + X S) and S Y S), which cover every scored edge
(and, with ``terms_everywhere``, every stored edge).
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
class ProjectorGroup:
    """Triplets (edge ij(R), intermediate atom k at R1) with block shapes (n_i, n_k, n_j), for the
    projector term dH_ij(R) += sum_k,R1 S_ik(R1) Y_k S_kj(R - R1): ``left``/``right`` (m,) rows of the
    legs S_ik(R1) and S_kj(R - R1) in ``Graph.leg_banks[(n_i, n_k)]`` / ``[(n_k, n_j)]`` (the
    intermediate atom k is ``Graph.leg_atoms[(n_i, n_k)][left]``); ``start`` (m,) first position of
    the edge's block in the flat array the plan was made for (scored or far edges)."""

    ni: int
    nk: int
    nj: int
    left: torch.Tensor
    right: torch.Tensor
    start: torch.Tensor


@dataclass
class Graph:
    """Tensors of one structure (float tensors in ``dtype``; complex ones complex128).

    Geometry: ``numbers`` (N,), ``src``/``dst`` (Eg,) atom indices i, j of graph edges,
    ``vec`` (Eg, 3) r_j + R - r_i in Angstrom in e3nn's frame (y, z, x), ``length`` (Eg,) A.
    Inputs: ``x_node`` (N, D), ``x_edge`` (Eg, D) encoded H0 (eV / input_scale), grouped irreps; with
    ``density``, D doubles: [H0 | the density operator of H0's eigenstates / its scale] (:mod:`.density`).
    Scored flat arrays (F = sum over scored edges of 4 n_i n_j): ``h0``, ``h`` complex128 (F,) eV;
    ``s_spinor`` (F,) the overlap on spin-diagonal entries, 0 elsewhere; ``herm`` (F,) int32 position of
    each entry's Hermitian partner; ``entry_edge`` (F,) int32 scored-edge index of each entry.
    ``scored_shift`` (Es, 3) int lattice shifts; ``kpos`` (F,) int32 row-major position of each entry in
    the (2 nao, 2 nao) Bloch matrix.  Plans: ``edge_plans``/``node_plans`` (:class:`OutputPlan`).
    Trace labels: ``trace_edge`` (Eg, n_slots), ``trace_node`` (N, n_slots) of tr(dH dH^dagger) per
    shell pair in (eV / target_scale)^2, with masks ``trace_edge_mask``/``trace_node_mask``.
    On-site operator term: ``onsite_start`` (N,) first position of atom i's on-site block in the
    scored flat array, ``op_groups`` the scored edges by block shape (:class:`OperatorGroup`).
    Projector term (only when built with ``projector``): ``leg_banks`` {(n_a, n_b): (L, n_a, n_b)} the
    overlap blocks S_ab(R) (dimensionless, in ``dtype``) used as legs, ``leg_atoms`` {(n_a, n_b): (L,)}
    their atoms b, ``proj_groups`` (:class:`ProjectorGroup`).
    Operator terms on every stored edge (``terms_everywhere``): the *far* edges are the stored edges
    outside the scored set; with ``far_plans``: ``far_take`` (Ff,) positions of their entries in the
    sample's flat H, ``far_s_spinor`` (Ff,), ``far_op_groups`` / ``far_proj_groups`` (plans of both terms
    on the far flat array); with a k-space grid: ``k_s`` (K, nao, nao) the Bloch sum of S over every
    stored edge and ``k_s_legs`` (K, nao, nao) over the projector's legs, so the loss sees both terms
    on every edge.
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
    leg_banks: dict = None
    leg_atoms: dict = None
    proj_groups: list = None
    far_take: np.ndarray = None
    far_s_spinor: torch.Tensor = None
    far_op_groups: list = None
    far_proj_groups: list = None
    k_s: torch.Tensor = None
    k_s_legs: torch.Tensor = None

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
            elif k in ("op_groups", "far_op_groups") and v is not None:
                v = [OperatorGroup(q.ni, q.nj, *(t.to(device) for t in (q.start, q.i, q.j))) for q in v]
            elif k in ("proj_groups", "far_proj_groups") and v is not None:
                v = [ProjectorGroup(q.ni, q.nk, q.nj, *(t.to(device) for t in (q.left, q.right, q.start)))
                     for q in v]
            elif k in ("leg_banks", "leg_atoms") and v is not None:
                v = {shape: t.to(device) for shape, t in v.items()}
            out[k] = v
        return Graph(**out)


def _edge_entries(sample, edges: np.ndarray) -> np.ndarray:
    """Positions in the sample's flat H of the entries of ``edges`` (blocks in that order)."""
    off = 4 * sample.block_offsets
    starts, stops = off[:-1][edges], off[1:][edges]
    return np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) if len(edges) else np.zeros(0, np.int64)


def _block_starts(sample, edges: np.ndarray) -> np.ndarray:
    """(E',) first position of each edge's spinor block (4 n_i n_j entries) in the flat array of
    ``edges`` (their blocks concatenated in that order, e.g. the scored flat array)."""
    return np.concatenate([[0], np.cumsum(4 * sample.block_sizes[edges])])[:-1].astype(np.int64)


def _hermitian_partner(sample, scored: np.ndarray) -> np.ndarray:
    """For the scored flat array: the position of entry (e, a, b)'s partner (rev(e), b, a)."""
    n = sample.orbitals_per_atom
    ni, nj = 2 * n[sample.edge_index[scored, 0]], 2 * n[sample.edge_index[scored, 1]]
    start = _block_starts(sample, scored)
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


def _onsite_starts(sample, scored: np.ndarray) -> np.ndarray:
    """(N,) first position of each atom's on-site block in the scored flat array."""
    start = _block_starts(sample, scored)
    onsite = sample.is_onsite[scored]
    out = np.zeros(sample.n_atoms, np.int64)
    out[sample.edge_index[scored[onsite], 0]] = start[onsite]
    return out


def _operator_groups(sample, edges: np.ndarray) -> list:
    """[OperatorGroup] of the flat array of ``edges`` (blocks concatenated in that order)."""
    n = sample.orbitals_per_atom
    i, j = sample.edge_index[edges, 0], sample.edge_index[edges, 1]
    start = _block_starts(sample, edges)
    groups = []
    for ni, nj in sorted(set(zip(n[i].tolist(), n[j].tolist()))):
        sel = (n[i] == ni) & (n[j] == nj)
        groups.append(OperatorGroup(int(ni), int(nj), *(torch.from_numpy(np.ascontiguousarray(a[sel]).astype(np.int64))
                                                         for a in (start, i, j))))
    return groups


def _leg_mask(sample, threshold: float) -> np.ndarray:
    """(E,) edges whose overlap block has |S_ab(R)|_F >= ``threshold`` (the projector term's legs)."""
    if not len(sample.S):
        return np.zeros(0, bool)
    return np.sqrt(np.add.reduceat(sample.S ** 2, sample.block_offsets[:-1])) >= threshold


def _leg_finder(ei: np.ndarray, sh: np.ndarray, legs: np.ndarray, n_atoms: int):
    """``find(a, b, shift)`` -> the leg a -> b at that lattice shift (its edge position), or -1;
    vectorised over arrays ``a``, ``b`` (n,) and ``shift`` (n, 3).  ``legs`` is never empty (the
    on-site overlap blocks have unit diagonals)."""
    lo, hi = sh[legs].min(axis=0), sh[legs].max(axis=0)
    width = hi - lo + 1

    def code(a, b, shift):                     # a unique integer per (a, b, shift) within [lo, hi]
        c = a.astype(np.int64) * n_atoms + b
        for d in range(3):
            c = c * width[d] + (shift[:, d] - lo[d])
        return c

    leg_codes = code(ei[legs, 0], ei[legs, 1], sh[legs])
    order = np.argsort(leg_codes)
    codes, by_code = leg_codes[order], legs[order]

    def find(a, b, shift):
        inside = np.all((shift >= lo) & (shift <= hi), axis=1)
        c = code(a, b, np.where(inside[:, None], shift, lo))
        pos = np.minimum(np.searchsorted(codes, c), len(codes) - 1)
        return np.where(inside & (codes[pos] == c), by_code[pos], -1)

    return find


def projector_plan(sample, edge_sets: list, threshold: float, dtype=torch.float32) -> tuple[dict, dict, list]:
    """(leg_banks, leg_atoms, [[ProjectorGroup] per edge set]) of the projector term S Y S on each array
    of edges in ``edge_sets`` (positions in the flat array of that set's blocks; see :class:`Graph`),
    with one leg bank shared by all sets.

    Legs are the stored edges whose overlap block has a Frobenius norm |S_ab(R)|_F >= ``threshold``
    (invariant under rotations, unlike its largest entry, so the term stays equivariant); every
    triplet (i -> k at R1 -> j at R) whose two legs pass is kept, so the term is the matrix of
    sum_k |phi_k> Y_k <phi_k| with the weakest overlaps dropped.  The leg set is closed under
    edge reversal (S_ba(-R) = S_ab(R)^T), so the triplets of ij(R) and ji(-R) mirror each other."""
    n = sample.orbitals_per_atom
    ei, sh, off = sample.edge_index, sample.edge_shift, sample.block_offsets
    legs = np.nonzero(_leg_mask(sample, threshold))[0]
    banks, atoms, row = {}, {}, np.full(len(ei), -1, np.int64)
    for na, nb in sorted(set(zip(n[ei[legs, 0]].tolist(), n[ei[legs, 1]].tolist()))):
        sel = legs[(n[ei[legs, 0]] == na) & (n[ei[legs, 1]] == nb)]
        row[sel] = np.arange(len(sel))
        banks[(na, nb)] = torch.as_tensor(np.stack([sample.S[off[e]:off[e + 1]].reshape(na, nb) for e in sel]),
                                          dtype=dtype)
        atoms[(na, nb)] = torch.from_numpy(ei[sel, 1].astype(np.int64))
    find = _leg_finder(ei, sh, legs, sample.n_atoms)
    by_source = legs[np.argsort(ei[legs, 0], kind="stable")]       # legs of atom a: by_source[first[a]:first[a + 1]]
    first = np.searchsorted(ei[by_source, 0], np.arange(sample.n_atoms + 1))
    plans = []
    for edges in edge_sets:
        start = _block_starts(sample, edges)
        i, j = ei[edges, 0], ei[edges, 1]
        count = first[i + 1] - first[i]                                # left legs i -> k of each edge
        q = np.repeat(np.arange(len(edges)), count)
        e1 = by_source[np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + np.repeat(first[i], count)]
        k = ei[e1, 1]
        e2 = find(k, j[q], sh[edges[q]] - sh[e1])                      # right leg k -> j at R - R1, or -1
        ok = e2 >= 0
        t = np.stack([q[ok], e1[ok], e2[ok], k[ok]], axis=1)           # (position in edges, left leg, right leg, k)
        ni, nk, nj = n[ei[edges[t[:, 0]], 0]], n[t[:, 3]], n[ei[edges[t[:, 0]], 1]]
        groups = []
        for a, b, c in sorted(set(zip(ni.tolist(), nk.tolist(), nj.tolist()))):
            sel = t[(ni == a) & (nk == b) & (nj == c)]
            groups.append(ProjectorGroup(a, b, c, *(torch.from_numpy(np.ascontiguousarray(x)) for x in
                                                    (row[sel[:, 1]], row[sel[:, 2]], start[sel[:, 0]]))))
        plans.append(groups)
    return banks, atoms, plans


def _everywhere(sample, far: np.ndarray | None, projector: float | None, kpts, dtype) -> dict:
    """Graph fields of the operator terms on every stored edge (see :class:`Graph`), apart from the
    projector's far plan; ``far``: the far edges when their plans are wanted."""
    out = {}
    if kpts is not None:
        from materials_ham.kspace import bloch

        cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
        out["k_s"] = torch.from_numpy(bloch(sample, "S", kpts.numpy())).to(cplx)
        if projector is not None:
            legs = np.repeat(_leg_mask(sample, projector), sample.block_sizes)
            out["k_s_legs"] = torch.from_numpy(bloch(sample, "S", kpts.numpy(), flat=np.where(legs, sample.S, 0.0))).to(cplx)
    if far is not None:
        take = _edge_entries(sample, far)
        out.update(far_take=take, far_s_spinor=torch.as_tensor(spinor_overlap(sample)[take], dtype=dtype),
                   far_op_groups=_operator_groups(sample, far))
    return out


def _density_features(sample, table, plans, scored, needed, take, density) -> np.ndarray:
    """Encoded density operator of H0's eigenstates (:func:`.density.density_blocks`) on the
    ``needed`` scored edges (on-site and graph edges; zero rows elsewhere), divided by its scale."""
    from .density import density_blocks

    width, length, scale = density
    flat = np.zeros(len(take), np.complex128)
    start = _block_starts(sample, scored)
    sel = np.nonzero(needed)[0]
    if len(sel):
        pos = np.concatenate([start[k] + np.arange(4 * sample.block_sizes[e]) for k, e in zip(sel, scored[sel])])
        flat[pos] = density_blocks(sample, scored[sel], width=width, length=length)
    return encode(table, plans, flat, len(scored)) / scale


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
                dtype=torch.float32, kspace_grid: int = 0, projector: float | None = None,
                terms_everywhere: bool = False, far_plans: bool = False, density: tuple | None = None) -> Graph:
    """Prepare one sample (see the module docstring).  ``cutoff`` (A): graph radius;
    ``kspace_grid`` > 0 also prepares the reference of the reciprocal-space loss; ``projector``
    (a threshold on |S_ab(R)|_F, see :func:`projector_plan`) also plans the projector term;
    ``terms_everywhere``: the operator terms act on every stored edge (k-space overlaps for the
    loss), ``far_plans``: with the real-space plans of the far edges (for predictions);
    ``density`` = (Fermi-Dirac width eV, k-grid length A, scale): the density operator of H0's
    eigenstates (:mod:`.density`) divided by scale is encoded beside H0 as more input channels."""
    lengths = sample.edge_lengths()
    onsite = sample.is_onsite
    scored = scored_edges(sample)
    s_len, s_on = lengths[scored], onsite[scored]
    in_graph = (~s_on) & (s_len < cutoff)
    graph_pos = np.full(len(scored), -1, np.int64)
    graph_pos[in_graph] = np.arange(in_graph.sum())
    node_of = np.where(s_on, sample.edge_index[scored, 0], -1)

    take = _edge_entries(sample, scored)
    h0, h = sample.H0[take], sample.H[take]
    plans = plan_blocks(table, sample.crystal.numbers, sample.edge_index[scored])
    perm_inv = table.grouped_columns()
    dense = encode(table, plans, h0, len(scored)) / input_scale
    target = encode(table, plans, h - h0, len(scored)) / target_scale
    dense = dense[:, np.argsort(perm_inv)]          # slot order -> grouped irreps layout
    if density is not None:                         # [H0 | rho], each in the grouped layout
        rho = _density_features(sample, table, plans, scored, s_on | in_graph, take, density)
        dense = np.concatenate([dense, rho[:, np.argsort(perm_inv)]], axis=1)

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
    x_node = np.zeros((n_atoms, dense.shape[1]))
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
    far = np.setdiff1d(np.arange(sample.n_edges), scored) if terms_everywhere and far_plans else None
    if projector is not None:
        banks, atoms, plans = projector_plan(sample, [scored] if far is None else [scored, far], projector, dtype)
        kdata.update(leg_banks=banks, leg_atoms=atoms, proj_groups=plans[0])
        if far is not None:
            kdata["far_proj_groups"] = plans[1]
    if terms_everywhere:
        kdata.update(_everywhere(sample, far, projector, kdata.get("kpts"), dtype))
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
        onsite_start=i64(_onsite_starts(sample, scored)), op_groups=_operator_groups(sample, scored),
        scored_take=take, n_full=len(sample.H), **kdata,
    )
