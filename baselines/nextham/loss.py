"""NextHAM's loss: gauge-standardised real-space L1 + reciprocal-space P/Q/PQ terms + trace loss.

All terms are in eV (traces in (eV / target_scale)^2), per structure (batch = 1 structure, as in
the paper).  With ``D = H0 + dH - H`` on the scored flat array (edges < 8 A):

* real space: ``mu* = Re<D, S x I2> / <S x I2, S x I2>``, ``L_real = mean(|Re(D - mu* S)| + |Im(D - mu* S)|)``
  (the project's gauge, :mod:`materials_ham.gauge`, on the same entries the headline metric uses);
* reciprocal space at one k of a shifted grid: ``M = C^dagger D(k) C`` with the reference
  S-orthonormal eigenvectors ``C``; the gauge ``mu I`` (``C^dagger S C = I``) is removed in closed
  form (``mu = Re tr M / n``), then L1 of the blocks P-P (bands up to E_F + 10 eV), Q-Q and P-Q;
  D(k) is the Bloch sum over every stored edge: edges outside the scored set keep H0, unless the
  model's operator terms act on every edge (``terms_on_all_edges``), which then enter D(k) in
  k-space: 1/2 (S(k) X + X S(k)) + S_legs(k) Y S_legs(k), with S x I2;
* trace: L1 of the TraceGrad invariants against tr(dH dH^dagger) per shell pair.

``L_H = w_real L_real + w_P L_P + w_Q L_Q + w_PQ L_PQ``; total ``= 0.8 L_H + 0.2 (L_H / L_T).detach() L_T``
(the paper's weights are the defaults of :class:`LossWeights`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .graph import Graph
from .model import Output


@dataclass
class LossWeights:
    real: float = 0.99965
    p: float = 0.0002
    q: float = 0.0001
    pq: float = 0.00015
    p_window_ev: float = 10.0
    h_share: float = 0.8
    trace_share: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


def real_space(g: Graph, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_real, D) with D = H0 + dH - H (complex128, F)."""
    D = g.h0 + dh.to(torch.complex128) - g.h
    s = g.s_spinor.to(torch.float64)
    mu = (D.real * s).sum() / (s * s).sum()
    err = D - mu * s
    return (err.real.abs() + err.imag.abs()).mean(), D


def operator_terms_k(g: Graph, out: Output, k: int) -> torch.Tensor:
    """(2 nao, 2 nao) the operator terms of ``out`` on every stored edge at k-point ``k`` (eV)."""
    n = 2 * g.nao
    eye = torch.eye(2, dtype=torch.complex128, device=out.dh.device)
    dense = lambda a: torch.zeros(n * n, dtype=torch.complex128, device=a.device).index_add(  # noqa: E731
        0, g.kpos.long(), a.to(torch.complex128)).reshape(n, n)                  # on-site blocks: no phase
    T = torch.zeros((n, n), dtype=torch.complex128, device=out.dh.device)
    if out.x is not None:
        S, X = torch.kron(eye, g.k_s[k].to(torch.complex128)), dense(out.x)
        T = T + 0.5 * (S @ X + X @ S)
    if out.y is not None:
        S = torch.kron(eye, g.k_s_legs[k].to(torch.complex128))
        T = T + S @ dense(out.y) @ S
    return T


def reciprocal_space(g: Graph, D: torch.Tensor, k: int, p_window_ev: float, out: Output | None = None) -> dict:
    """P, Q and PQ losses at the k-point ``k`` of the graph's grid (eV).  ``D`` = H0 + dH - H on
    the scored flat array; with ``out`` of a model whose operator terms act on every stored edge
    (the graph has ``k_s``), D holds only the free part and the terms enter in k-space."""
    n = 2 * g.nao
    phase = torch.exp(2j * np.pi * (g.scored_shift.to(torch.float64) @ g.kpts[k].to(torch.float64)))
    everywhere = out is not None and g.k_s is not None and (out.x is not None or out.y is not None)
    if everywhere:
        D = g.h0 + out.free.to(torch.complex128) - g.h
    Dk = torch.zeros(n * n, dtype=torch.complex128, device=D.device)
    Dk = Dk.index_add(0, g.kpos.long(), D * phase[g.entry_edge.long()]).reshape(n, n) + g.k_far[k].to(torch.complex128)
    if everywhere:
        Dk = Dk + operator_terms_k(g, out, k)
    C = g.k_vecs[k].to(torch.complex128)
    M = C.conj().T @ Dk @ C
    mu = torch.diagonal(M).real.mean()
    M = M - mu * torch.eye(n, dtype=M.dtype, device=M.device)
    P = g.k_eps[k] <= g.fermi_level + p_window_ev
    Q = ~P
    zero = torch.zeros((), dtype=torch.float64, device=D.device)
    out = {"p": M[P][:, P].abs().mean()}
    out["q"] = M[Q][:, Q].abs().mean() if Q.any() else zero
    out["pq"] = M[P][:, Q].abs().mean() if Q.any() else zero
    return out


def trace_loss(g: Graph, out: Output) -> torch.Tensor:
    terms = []
    for z in out.z_node:
        terms.append((z.to(torch.float64) - g.trace_node.to(torch.float64)).abs()[g.trace_node_mask])
    for z in out.z_edge:
        terms.append((z.to(torch.float64) - g.trace_edge.to(torch.float64)).abs()[g.trace_edge_mask])
    terms = [t for t in terms if t.numel()]
    return torch.cat(terms).mean() if terms else torch.zeros((), dtype=torch.float64)


def total_loss(g: Graph, out: Output, w: LossWeights, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """(loss, parts as floats in meV / unitless) for one structure; ``rng`` picks the k-point (no
    reciprocal-space terms when None or when the graph has no k-space reference)."""
    l_real, D = real_space(g, out.dh)
    l_h = w.real * l_real
    parts = {"real_mev": 1e3 * float(l_real.detach())}
    if rng is not None and g.kpts is not None:
        ks = reciprocal_space(g, D, int(rng.integers(len(g.kpts))), w.p_window_ev, out)
        l_h = l_h + w.p * ks["p"] + w.q * ks["q"] + w.pq * ks["pq"]
        parts.update({f"{k}_mev": 1e3 * float(v.detach()) for k, v in ks.items()})
    if out.z_node or out.z_edge:
        l_t = trace_loss(g, out)
        loss = w.h_share * l_h + w.trace_share * (l_h / (l_t + 1e-12)).detach() * l_t
        parts["trace"] = float(l_t.detach())
    else:
        loss = l_h
    parts["loss"] = float(loss.detach())
    return loss, parts
