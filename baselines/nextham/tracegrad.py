"""TraceGrad: an invariant supervised by traces, its gradient injected as an equivariant feature.

For equivariant features ``f`` (irreps ``I``), ``z = MLP(invariants of f x f)`` is invariant
(``e3nn.o3.TensorSquare`` restricted to ``0e``).  ``z`` is trained to predict the per-shell-pair
traces ``tr(dH dH^dagger)`` of the target correction; ``v = d(sum z)/df`` is then an equivariant
feature that carries what the invariant learned, and is injected as
``f + alpha (|f| / |v|) v`` (norms per row, ``alpha = 0.2`` as in the paper; ``|v|`` floored at
``eps`` so that a gradient that vanishes by symmetry stays zero instead of amplified rounding).
"""
from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


class TraceGrad(nn.Module):
    """``forward(f) -> (f', z)`` with ``f`` (B, I.dim), ``z`` (B, n_out)."""

    def __init__(self, irreps: o3.Irreps, n_out: int, hidden: int = 64, alpha: float = 0.2, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.square = o3.TensorSquare(irreps, filter_ir_out=[o3.Irrep("0e")])
        self.mlp = nn.Sequential(nn.Linear(self.square.irreps_out.dim, hidden), nn.SiLU(), nn.Linear(hidden, n_out))
        self.alpha = alpha

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        train = self.training and torch.is_grad_enabled() and f.requires_grad
        with torch.enable_grad():
            inp = f if train else f.detach().requires_grad_(True)
            z = self.mlp(self.square(inp))
            (v,) = torch.autograd.grad(z.sum(), inp, create_graph=train)
        if not train:
            v, z = v.detach(), z.detach()
        # |v| is floored: where symmetry makes v vanish, rounding noise must not be blown up to |f|
        scale = f.norm(dim=-1, keepdim=True) / torch.sqrt(v.pow(2).sum(-1, keepdim=True) + self.eps ** 2)
        return f + self.alpha * scale * v, z
