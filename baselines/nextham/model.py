"""The NextHAM network: an E(3)-equivariant graph-attention Transformer on H0 (e3nn).

Composed of named blocks (MACE-style):

* :class:`GaussianBasis` - radial embedding of edge lengths on [0, r_max] A, smooth cutoff.
* :class:`Embedding` - the encoded H0 blocks (:mod:`.encoding`) -> hidden node/edge irreps.
  Element identity enters through H0 only (no element embedding), as in the paper.  Optionally
  (``density_input``) also the density operator of H0's eigenstates filled with the valence
  electrons (:mod:`.density`), encoded the same way: the charge the SCF would move first.
* :class:`TransformerBlock` - Equiformer-style attention: messages are tensor products of
  (source, target, edge) features with the edge's spherical harmonics, weighted by a radial MLP;
  attention logits see the message invariants *and* the distance embedding; edge features are
  updated in every block; equivariant norm, gated non-linearity, then :class:`TraceGrad`.
* :class:`OutputHead` - hidden irreps -> the encoded correction dH of every shell pair, decoded
  to spinor blocks (all four spin blocks, real and imaginary parts), times the envelope
  exp(-gamma r) on off-site blocks, then made Hermitian: dH_e <- (dH_e + dH_rev(e)^dagger) / 2.
* :class:`NextHAM` - one or several sub-models, each responsible for an edge-length range.
* Optional **on-site-operator term** (``onsite_operator``): a Hermitian spinor operator X_i per atom,
  decoded from node features like an on-site block, enters as dH += 1/2 (S X + X S) on every scored
  edge, i.e. dH_ij(R) += 1/2 (S_ij(R) X_j + X_i S_ij(R)) with S x I2; in k-space (scored edges)
  this is 1/2 (S(k) X + X S(k)).  It holds the smooth part of the SCF change exactly (a potential
  change v that is constant near atoms i and j gives dH_ij = v S_ij) and it is gentler on
  ill-conditioned overlaps: for c with S(k) c = lambda c, c^dagger dH c / c^dagger S c is bounded
  by |X|, where a free correction's error e gives e / lambda.  Couplings between a near-null
  direction and the others are *not* bounded this way (about |X| / sqrt(lambda) in an
  S-orthonormal basis), so the reciprocal-space loss is still needed.
* Optional **projector term** (``projector_operator``): a second Hermitian spinor operator Y_k per
  atom enters as dH_ij(R) += sum_k,R1 S_ik(R1) Y_k S_kj(R - R1) (S x I2), the matrix of the operator
  sum_k |phi_k> Y_k <phi_k| (a separable, PAW-projector-like operator built on the basis itself).
  In k-space it is S(k) Y S(k), bounded by |S| |Y| on *every* entry of an S-orthonormal basis
  (S^-1/2 S Y S S^-1/2 = S^1/2 Y S^1/2), couplings included: an ill-conditioned overlap cannot
  amplify it.  The legs are the overlap blocks with |S_ab(R)|_F >= ``projector_threshold``
  (:func:`.graph.projector_plan`); the dropped legs bound the amplification by about
  threshold / sqrt(lambda) instead of 1 / sqrt(lambda).  It costs a three-centre sum (triplets
  i -> k -> j), batched by block shape.
* ``terms_on_all_edges``: both operator terms act on every stored edge, not only on the scored ones
  (< 8 A).  A correction that stops at 8 A, keeping H0 beyond, is not the matrix of any operator,
  and ill-conditioned overlaps turn the seam into states below the spectrum, even when the
  correction is exact below 8 A (``benchmarks/ghost_cut.py``).  The far edges are written by
  :meth:`NextHAM.predict_flat` (graph built with ``predict=True``) and seen by the loss in k-space.

Units: lengths in Angstrom, energies in eV (features are scaled by ``input_scale`` /
``node_scale``/``edge_scale`` from the config).  All features live in e3nn's frame (:mod:`.encoding`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from e3nn import o3
from torch import nn

from .encoding import SlotTable, pair_map
from .graph import Graph, build_graph
from .tracegrad import TraceGrad


# ------------------------------------------------------------------------------------ config
@dataclass
class ModelConfig:
    """Sizes of the network.  ``mul``: multiplicity of each irrep l in the hidden features (both
    parities, limited to the irreps the output needs, plus 0e); ``ranges``: one sub-model per
    [lo, hi) edge-length range in A (on-site blocks belong to the range containing 0); scored
    edges beyond the last range keep H0."""

    mul: dict = field(default_factory=lambda: {0: 16, 1: 8, 2: 4, 3: 2, 4: 2, 5: 2})
    n_blocks: int = 2
    heads: int = 4
    lmax_sh: int = 2
    n_rbf: int = 32
    r_max: float = 10.0
    cutoff: float = 6.0
    radial_hidden: int = 32
    tracegrad: bool = True
    tracegrad_alpha: float = 0.2
    envelope_gamma: float = 0.2
    ranges: list = field(default_factory=lambda: [[0.0, 6.0]])
    zero_init_output: bool = True     # start exactly at H0 (the paper's "starting point")
    input_scale: float = 1.0          # eV: H0 features are divided by it
    target_scale: float = 1.0         # eV: trace labels are in units of target_scale^2
    node_scale: float = 1.0           # eV: unit of the on-site output
    edge_scale: float = 1.0           # eV: unit of the off-site output
    onsite_operator: bool = False     # add 1/2 (S X + X S) with a per-atom operator X (module docstring)
    projector_operator: bool = False  # add S Y S with a per-atom operator Y (module docstring)
    projector_threshold: float = 1e-2  # legs of S Y S: overlap blocks with Frobenius norm at least this
    terms_on_all_edges: bool = False  # the operator terms act on every stored edge, not only scored ones
    free_correction: bool = True      # the free node/edge correction (off: the operator term only)
    density_input: bool = False       # also read the density operator of H0's eigenstates (density.py)
    density_width: float = 0.1        # eV: Fermi-Dirac width of its occupations
    density_kgrid_length: float = 12.0  # A: its Gamma-centred k-grid has ceil(length / |a_i|) points per axis
    density_scale: float = 1.0        # electrons: its features are divided by it (RMS, set from the data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mul"] = {str(k): v for k, v in self.mul.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        if "mul" in d:
            d["mul"] = {int(k): int(v) for k, v in d["mul"].items()}
        return cls(**d)


def model_graph(sample, sid: str, table: SlotTable, cfg: ModelConfig, *, dtype=torch.float32,
                kspace_grid: int = 0, predict: bool = False) -> Graph:
    """:func:`.graph.build_graph` with what ``cfg`` needs: graph radius, scales, density input, projector plan, and
    for operator terms on every stored edge their k-space overlaps (training) or, with ``predict``,
    their real-space plans on the far edges."""
    everywhere = cfg.terms_on_all_edges and (cfg.onsite_operator or cfg.projector_operator)
    return build_graph(sample, sid, table, cutoff=cfg.cutoff, input_scale=cfg.input_scale,
                       target_scale=cfg.target_scale, dtype=dtype, kspace_grid=kspace_grid,
                       projector=cfg.projector_threshold if cfg.projector_operator else None,
                       terms_everywhere=everywhere, far_plans=everywhere and predict,
                       density=density_settings(cfg))


def density_settings(cfg: ModelConfig) -> tuple | None:
    """(width eV, k-grid length A, scale) of the density input, or None when the config has none."""
    return (cfg.density_width, cfg.density_kgrid_length, cfg.density_scale) if cfg.density_input else None


def hidden_irreps(cfg: ModelConfig, table: SlotTable) -> o3.Irreps:
    """Hidden irreps, 0e first (the blocks read the invariants from the first ``mul[0]`` columns)."""
    needed = {(ir.l, ir.p) for _, ir in table.grouped_irreps()} | {(0, 1)}
    order = sorted(needed, key=lambda lp: (lp[0], -lp[1]))
    return o3.Irreps([(cfg.mul.get(l, 0), (l, p)) for l, p in order if cfg.mul.get(l, 0) > 0])


# --------------------------------------------------------------------------------- blocks
class GaussianBasis(nn.Module):
    """``forward(r) -> (E, n)``: Gaussians on [0, r_max] A times a cosine cutoff at ``cutoff``."""

    def __init__(self, n: int, r_max: float, cutoff: float):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, r_max, n))
        self.width = r_max / (n - 1)
        self.cutoff = cutoff

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        g = torch.exp(-0.5 * ((r[:, None] - self.centers) / self.width) ** 2)
        env = 0.5 * (torch.cos(math.pi * torch.clamp(r / self.cutoff, max=1.0)) + 1.0)
        return g * env[:, None]


class EquivariantNorm(nn.Module):
    """Per irrep type: scalars are centred and scaled (layer norm over channels); l > 0 irreps are
    divided by their RMS norm over channels; learnable per-channel scale."""

    def __init__(self, irreps: o3.Irreps, eps: float = 1e-6):
        super().__init__()
        self.irreps = irreps
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(irreps.num_irreps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, k = [], 0
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices()):
            y = x[:, sl].reshape(-1, mul, ir.dim)
            if ir.l == 0 and ir.p == 1:
                y = y - y.mean(dim=1, keepdim=True)
            rms = (y.pow(2).sum(-1).mean(-1, keepdim=True) + self.eps).sqrt()
            y = y / rms[..., None] * self.weight[k:k + mul][None, :, None]
            out.append(y.reshape(-1, mul * ir.dim))
            k += mul
        return torch.cat(out, dim=-1)


class ScalarGate(nn.Module):
    """SiLU on the 0e channels; every other channel multiplied by a sigmoid gate computed from
    the 0e channels (one gate per channel, shared over its 2l+1 components)."""

    def __init__(self, irreps: o3.Irreps):
        super().__init__()
        self.irreps = irreps
        self.n0 = irreps.count("0e")
        self.n_gated = irreps.num_irreps - self.n0
        self.gate = nn.Linear(self.n0, self.n_gated)
        idx = []
        g = 0
        for mul, ir in irreps:
            for _ in range(mul):
                if ir.l == 0 and ir.p == 1:
                    idx += [-1] * ir.dim
                else:
                    idx += [g] * ir.dim
                    g += 1
        idx = torch.tensor(idx)
        self.register_buffer("gated_cols", torch.nonzero(idx >= 0).flatten())
        self.register_buffer("gate_of_col", idx[idx >= 0])
        self.register_buffer("scalar_cols", torch.nonzero(idx < 0).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, self.scalar_cols]
        g = torch.sigmoid(self.gate(s))
        out = torch.empty_like(x)
        out[:, self.scalar_cols] = nn.functional.silu(s)
        out[:, self.gated_cols] = x[:, self.gated_cols] * g[:, self.gate_of_col]
        return out


def _uvu_tp(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps) -> o3.TensorProduct:
    """Depthwise tensor product x (irreps_in) with Y (irreps_sh), per-edge weights, outputs only
    into irreps present in ``irreps_target``."""
    targets = {ir for _, ir in irreps_target}
    out, instr = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in targets:
                    instr.append((i, j, len(out), "uvu", True))
                    out.append((mul, ir_out))
    return o3.TensorProduct(irreps_in, irreps_sh, o3.Irreps(out), instr, shared_weights=False, internal_weights=False)


def scatter_softmax(logits: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of ``logits`` (E, H) over the edges sharing the same ``index`` (E,)."""
    idx = index[:, None].expand_as(logits)
    mx = torch.full((n, logits.shape[1]), -torch.inf, dtype=logits.dtype, device=logits.device)
    mx = mx.scatter_reduce(0, idx, logits, reduce="amax", include_self=True)
    ex = torch.exp(logits - mx[index])
    den = torch.zeros((n, logits.shape[1]), dtype=logits.dtype, device=logits.device).index_add_(0, index, ex)
    return ex / den[index]


class Embedding(nn.Module):
    """Encoded H0 (grouped irreps of the slot table) -> hidden node and edge features."""

    def __init__(self, irreps_in: o3.Irreps, irreps_h: o3.Irreps, n_rbf: int):
        super().__init__()
        self.node = o3.Linear(irreps_in, irreps_h)
        self.edge = o3.Linear(irreps_in, irreps_h)
        self.n0 = irreps_h.count("0e")
        self.radial = nn.Linear(n_rbf, self.n0)

    def forward(self, x_node, x_edge, rbf):
        f = self.edge(x_edge)
        f = torch.cat([f[:, :self.n0] + self.radial(rbf), f[:, self.n0:]], dim=-1)
        return self.node(x_node), f


class TransformerBlock(nn.Module):
    """One attention block; see the module docstring.  ``forward(h, f, sh, rbf, src, dst) ->
    (h, f, z_node, z_edge)`` with h (N, H), f (E, H), sh (E, SH), rbf (E, n_rbf)."""

    def __init__(self, irreps_h: o3.Irreps, irreps_sh: o3.Irreps, cfg: ModelConfig, n_traces: int):
        super().__init__()
        self.lin_src = o3.Linear(irreps_h, irreps_h)
        self.lin_dst = o3.Linear(irreps_h, irreps_h)
        self.lin_edge = o3.Linear(irreps_h, irreps_h)
        self.tp = _uvu_tp(irreps_h, irreps_sh, irreps_h)
        self.radial = nn.Sequential(nn.Linear(cfg.n_rbf, cfg.radial_hidden), nn.SiLU(),
                                    nn.Linear(cfg.radial_hidden, self.tp.weight_numel))
        self.lin_msg = o3.Linear(self.tp.irreps_out, irreps_h)
        self.n0 = irreps_h.count("0e")
        self.heads = cfg.heads
        self.attn = nn.Sequential(nn.Linear(self.n0 + cfg.n_rbf, 32), nn.SiLU(), nn.Linear(32, cfg.heads))
        self.lin_value = o3.Linear(irreps_h, irreps_h)
        self.lin_node = o3.Linear(irreps_h, irreps_h)
        self.lin_edge_out = o3.Linear(irreps_h, irreps_h)
        self.norm_h, self.norm_f = EquivariantNorm(irreps_h), EquivariantNorm(irreps_h)
        self.act_h, self.act_f = ScalarGate(irreps_h), ScalarGate(irreps_h)
        head = []
        for mul, ir in irreps_h:
            for u in range(mul):
                head += [u % cfg.heads] * ir.dim
        self.register_buffer("head_of_col", torch.tensor(head))
        self.tg_node = TraceGrad(irreps_h, n_traces, alpha=cfg.tracegrad_alpha) if cfg.tracegrad else None
        self.tg_edge = TraceGrad(irreps_h, n_traces, alpha=cfg.tracegrad_alpha) if cfg.tracegrad else None

    def forward(self, h, f, sh, rbf, src, dst):
        x = self.lin_src(h)[src] + self.lin_dst(h)[dst] + self.lin_edge(f)
        m = self.lin_msg(self.tp(x, sh, self.radial(rbf)))
        alpha = scatter_softmax(self.attn(torch.cat([m[:, :self.n0], rbf], dim=-1)), src, len(h))
        v = self.lin_value(m) * alpha[:, self.head_of_col]
        agg = torch.zeros_like(h).index_add_(0, src, v)
        h = self.act_h(self.norm_h(h + self.lin_node(agg)))
        f = self.act_f(self.norm_f(f + self.lin_edge_out(m)))
        z_node = z_edge = None
        if self.tg_node is not None:
            h, z_node = self.tg_node(h)
            f, z_edge = self.tg_edge(f)
        return h, f, z_node, z_edge


class OutputHead(nn.Module):
    """Hidden features -> encoded correction (grouped slot irreps) of nodes and edges.
    ``zero_init``: weights start at zero, so an untrained model predicts H = H0 exactly."""

    def __init__(self, irreps_h: o3.Irreps, irreps_out: o3.Irreps, zero_init: bool = False,
                 operator: bool = False, projector: bool = False, free: bool = True):
        super().__init__()
        lin = lambda on: o3.Linear(irreps_h, irreps_out) if on else None  # noqa: E731
        self.node, self.edge = lin(free), lin(free)
        self.operator, self.projector = lin(operator), lin(projector)
        if zero_init:
            with torch.no_grad():
                for m in (self.node, self.edge, self.operator, self.projector):
                    if m is not None:
                        m.weight.zero_()

    def forward(self, h, f):
        """(node correction, edge correction, on-site operator X, projector operator Y), encoded;
        None for the parts the config leaves out."""
        run = lambda m, x: m(x) if m is not None else None  # noqa: E731
        return run(self.node, h), run(self.edge, f), run(self.operator, h), run(self.projector, h)


class SubModel(nn.Module):
    """Embedding -> n_blocks x TransformerBlock -> OutputHead (one edge-length range)."""

    def __init__(self, cfg: ModelConfig, table: SlotTable):
        super().__init__()
        self.irreps_in = table.grouped_irreps()
        self.irreps_h = hidden_irreps(cfg, table)
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax_sh)
        self.rbf = GaussianBasis(cfg.n_rbf, cfg.r_max, cfg.cutoff)
        inputs = self.irreps_in + self.irreps_in if cfg.density_input else self.irreps_in   # [H0 | rho]
        self.embed = Embedding(inputs, self.irreps_h, cfg.n_rbf)
        self.blocks = nn.ModuleList(TransformerBlock(self.irreps_h, self.irreps_sh, cfg, table.n_slots)
                                    for _ in range(cfg.n_blocks))
        self.head = OutputHead(self.irreps_h, self.irreps_in, zero_init=cfg.zero_init_output,
                               operator=cfg.onsite_operator, projector=cfg.projector_operator,
                               free=cfg.free_correction)

    def forward(self, g: Graph):
        sh = o3.spherical_harmonics(self.irreps_sh, g.vec, normalize=True, normalization="component")
        rbf = self.rbf(g.length)
        h, f = self.embed(g.x_node, g.x_edge, rbf)
        z_nodes, z_edges = [], []
        for block in self.blocks:
            h, f, zn, ze = block(h, f, sh, rbf, g.src, g.dst)
            if zn is not None:
                z_nodes.append(zn)
                z_edges.append(ze)
        return (*self.head(h, f), z_nodes, z_edges)


@dataclass
class Output:
    """``dh`` complex (F,) the Hermitian correction on the scored flat array (eV);
    ``z_node``/``z_edge``: TraceGrad invariants per block (lists of (N|E, n_slots));
    ``free`` (F,) the free node/edge part of ``dh`` (Hermitian); ``x``/``y`` (F,) the Hermitian
    operators X_i / Y_i of the operator terms in the on-site blocks, zero elsewhere (None when off)."""

    dh: torch.Tensor
    z_node: list
    z_edge: list
    free: torch.Tensor = None
    x: torch.Tensor = None
    y: torch.Tensor = None


class NextHAM(nn.Module):
    """The reference model: ``forward(graph) -> Output``; :meth:`predict_flat` gives H = H0 + dH on
    the sample's full flat array (numpy complex128, eV)."""

    def __init__(self, cfg: ModelConfig, table: SlotTable):
        super().__init__()
        self.cfg = cfg
        self.table = table
        self.subs = nn.ModuleList(SubModel(cfg, table) for _ in cfg.ranges)
        self.register_buffer("ranges", torch.tensor(cfg.ranges, dtype=torch.float64))
        # the encoding's orthogonal maps per (l1, l2): constants (float64), cast on use
        self._maps = {(l1, l2): torch.from_numpy(pair_map(l1, l2)) for (l1, _, l2, _) in table.slots}
        # grouped irreps layout (what the head outputs) -> slot order (contiguous per shell pair)
        self.register_buffer("to_slot", torch.from_numpy(table.grouped_columns()), persistent=False)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, g: Graph) -> Output:
        dtype = g.x_edge.dtype
        dh = torch.zeros(len(g.h0), dtype=torch.complex128 if dtype == torch.float64 else torch.complex64,
                         device=g.x_edge.device)
        z_node, z_edge = [], []
        x = y = None
        env = torch.exp(-self.cfg.envelope_gamma * g.length)[:, None]
        for k, sub in enumerate(self.subs):
            lo, hi = float(self.ranges[k, 0]), float(self.ranges[k, 1])
            node_out, edge_out, op_out, proj_out, zn, ze = sub(g)
            z_node += zn
            z_edge += ze
            if self.cfg.free_correction:
                keep = ((g.length >= lo) & (g.length < hi)).to(dtype)[:, None]
                self._scatter(dh, g.edge_plans, edge_out * (env * keep * self.cfg.edge_scale))
            if lo <= 0.0 < hi:
                if self.cfg.free_correction:
                    self._scatter(dh, g.node_plans, node_out * self.cfg.node_scale)
                if op_out is not None:
                    x = torch.zeros_like(dh)
                    self._scatter(x, g.node_plans, op_out * self.cfg.node_scale)
                if proj_out is not None:
                    y = torch.zeros_like(dh)
                    self._scatter(y, g.node_plans, proj_out * self.cfg.node_scale)
        herm = g.herm.long()
        free = 0.5 * (dh + dh[herm].conj())
        if x is not None:
            x = 0.5 * (x + x[herm].conj())                  # Hermitian operators (on-site blocks)
            dh = dh + self._operator_term(g, x)
        if y is not None:
            y = 0.5 * (y + y[herm].conj())
            dh = dh + self._projector_term(g, y)
        dh = 0.5 * (dh + dh[herm].conj())
        return Output(dh, z_node, z_edge, free, x, y)

    def far_terms(self, g: Graph, out: Output) -> torch.Tensor:
        """The operator terms on the far edges (stored, unscored) of ``out``: (Ff,) complex on the far
        flat array (eV); the graph must carry the far plans (``model_graph(..., predict=True)``)."""
        if g.far_take is None:
            raise ValueError(f"structure {g.sid}: graph built without the far-edge plans "
                             "(model_graph(..., predict=True))")
        far = torch.zeros(len(g.far_take), dtype=out.dh.dtype, device=out.dh.device)
        if out.x is not None:
            far = far + self._operator_term(g, out.x, far=True)
        if out.y is not None:
            far = far + self._projector_term(g, out.y, far=True)
        return far

    @staticmethod
    def _operator_term(g: Graph, x: torch.Tensor, far: bool = False) -> torch.Tensor:
        """1/2 (S X + X S) on the scored flat array (``far``: on the far flat array), from ``x`` (F,)
        holding each atom's operator X_i in its on-site block of the scored flat array (eV).  X need
        not be Hermitian here: symmetrising dH turns the term into the one of X's Hermitian part."""
        s = (g.far_s_spinor if far else g.s_spinor).to(x.real.dtype)
        out = torch.zeros(len(s), dtype=x.dtype, device=x.device)
        for q in (g.far_op_groups if far else g.op_groups):
            ni, nj, m = q.ni, q.nj, len(q.start)
            blk = q.start[:, None] + torch.arange(4 * ni * nj, device=x.device)
            S = s[blk].reshape(m, 2, ni, 2, nj)[:, 0, :, 0, :].to(x.dtype)             # (m, ni, nj)
            Xi = x[g.onsite_start[q.i][:, None] + torch.arange(4 * ni * ni, device=x.device)]
            Xj = x[g.onsite_start[q.j][:, None] + torch.arange(4 * nj * nj, device=x.device)]
            sx = torch.einsum("mac,mscq->msaq", S, Xj.reshape(m, 2, nj, 2 * nj))        # (S x I2) X_j
            xs = torch.einsum("mptc,mcb->mptb", Xi.reshape(m, 2 * ni, 2, ni), S)         # X_i (S x I2)
            out.index_put_((blk.reshape(-1),), 0.5 * (sx.reshape(-1) + xs.reshape(-1)), accumulate=True)
        return out

    @staticmethod
    def _projector_term(g: Graph, y: torch.Tensor, far: bool = False) -> torch.Tensor:
        """sum_k,R1 S_ik(R1) Y_k S_kj(R - R1) (S x I2) on the scored flat array (``far``: on the far
        flat array), from ``y`` (F,) holding each atom's operator Y_k in its on-site block of the
        scored flat array (eV); the graph must carry the projector plan (``build_graph(...,
        projector=threshold)``).  As for :meth:`_operator_term`, symmetrising keeps Y's Hermitian part."""
        if g.proj_groups is None:
            raise ValueError(f"structure {g.sid}: graph built without the projector plan "
                             "(build_graph(..., projector=threshold))")
        out = torch.zeros(len(g.far_take) if far else len(y), dtype=y.dtype, device=y.device)
        arange = lambda n: torch.arange(n, device=y.device)  # noqa: E731
        half = {}                    # (n_i, n_k): S_ik(R1) Y_k of every leg of that shape, (L, 2, n_i, 2, n_k)
        for q in (g.far_proj_groups if far else g.proj_groups):
            ni, nk, nj = q.ni, q.nk, q.nj
            if (ni, nk) not in half:
                bank = g.leg_banks[(ni, nk)].to(y.dtype)
                Y = y[g.onsite_start[g.leg_atoms[(ni, nk)]][:, None] + arange(4 * nk * nk)]
                half[(ni, nk)] = torch.einsum("lac,lsctd->lsatd", bank, Y.reshape(-1, 2, nk, 2, nk))
            right = g.leg_banks[(nk, nj)][q.right].to(y.dtype)                           # (m, nk, nj)
            t = torch.einsum("msatd,mdb->msatb", half[(ni, nk)][q.left], right)
            blk = q.start[:, None] + arange(4 * ni * nj)
            out.index_put_((blk.reshape(-1),), t.reshape(-1), accumulate=True)
        return out

    def _scatter(self, out: torch.Tensor, plans, feats: torch.Tensor) -> None:
        """Decode grouped-layout features (rows: owners) of every shell pair and add them into the
        flat complex array ``out``."""
        feats = feats[:, self.to_slot]
        for p in plans:
            W = self._maps[(p.l1, p.l2)].to(feats.dtype).to(feats.device)
            cols = p.start[:, None] + torch.arange(W.shape[0], device=feats.device)
            y = feats[p.owner[:, None], cols] @ W
            half = y.shape[1] // 2
            out.index_put_((p.flat.long(),), torch.complex(y[:, :half], y[:, half:]).to(out.dtype), accumulate=True)

    @torch.no_grad()
    def predict_flat(self, g: Graph, h0_full: np.ndarray) -> np.ndarray:
        """H = H0 + dH on every stored edge of the sample (complex128 numpy, eV); with
        ``terms_on_all_edges`` the operator terms also cover the far edges."""
        out = np.array(h0_full, dtype=np.complex128, copy=True)
        res = self(g)
        out[g.scored_take] += res.dh.detach().cpu().numpy().astype(np.complex128)
        if self.cfg.terms_on_all_edges and (res.x is not None or res.y is not None):
            out[g.far_take] += self.far_terms(g, res).cpu().numpy().astype(np.complex128)
        return out


def build_model(cfg: ModelConfig, table: SlotTable, dtype: torch.dtype = torch.float32) -> NextHAM:
    """A :class:`NextHAM` whose parameters *and* e3nn constants (Clebsch-Gordan tables, computed
    at construction in the default dtype) are in ``dtype``: casting a float32-built model to
    float64 would keep float32-rounded coefficients (equivariance only to ~1e-8)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return NextHAM(cfg, table).to(dtype)
    finally:
        torch.set_default_dtype(old)
