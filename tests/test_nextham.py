"""The NextHAM reference model (baselines/nextham) on real engine output.

Encoding exactness and equivariance, E(3) equivariance / invariances and hermiticity of the
network (float64), the loss going down on a CPU, and the train -> predict -> score round trip
through the command line with a resumable, safely-loadable checkpoint.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("e3nn")

from baselines.nextham.encoding import SlotTable, decode, encode, pair_irreps, pair_map, plan_blocks  # noqa: E402
from baselines.nextham.loss import LossWeights, total_loss  # noqa: E402
from baselines.nextham.model import ModelConfig, NextHAM, build_model, model_graph  # noqa: E402
from materials_ham import load_sample  # noqa: E402
from materials_ham.rotations import random_rotation, rotate_sample, wigner_d  # noqa: E402

SMALL = ModelConfig(mul={0: 6, 1: 3, 2: 2, 3: 1, 4: 1, 5: 1}, n_blocks=2, heads=2, n_rbf=8, radial_hidden=8,
                    cutoff=5.0, ranges=[[0.0, 3.0], [3.0, 5.0]], input_scale=5.0, target_scale=0.05,
                    zero_init_output=False, onsite_operator=True, projector_operator=True,
                    terms_on_all_edges=True, density_input=True, density_scale=0.3)


def _table(*samples):
    shells = {}
    for s in samples:
        shells.update({z: b.ls for z, b in s.basis.items()})
    return SlotTable.from_shells(shells)


def _graph(sample, table, cfg=SMALL, dtype=torch.float64, kspace_grid=0):
    return model_graph(sample, "x", table, cfg, dtype=dtype, kspace_grid=kspace_grid, predict=True)


def _model(table, seed=0, cfg=SMALL):
    torch.manual_seed(seed)
    m = build_model(cfg, table, torch.float64)
    m.eval()
    return m


def _full(m, g):
    """The model's dH on every stored edge (far edges included when the operator terms cover them)."""
    return m.predict_flat(g, np.zeros(g.n_full, np.complex128))


# --------------------------------------------------------------------------------- encoding
@pytest.mark.parametrize("l1,l2", [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 2), (3, 2)])
def test_pair_map_is_orthogonal_with_the_announced_irreps(l1, l2):
    W = pair_map(l1, l2)
    n = 8 * (2 * l1 + 1) * (2 * l2 + 1)
    assert W.shape == (n, n)
    np.testing.assert_allclose(W @ W.T, np.eye(n), atol=1e-13)
    assert 2 * sum(2 * l + 1 for l, _ in pair_irreps(l1, l2)) == n
    assert {p for _, p in pair_irreps(l1, l2)} == {(-1) ** (l1 + l2)}


def test_encoding_round_trip_is_exact_on_real_blocks(si_sample):
    s = si_sample
    table = _table(s)
    plans = plan_blocks(table, s.crystal.numbers, s.edge_index)
    for name in ("H", "H0"):
        x = encode(table, plans, getattr(s, name), s.n_edges)
        back = decode(table, plans, x, len(s.H))
        assert np.abs(back - getattr(s, name)).max() < 1e-13 * np.abs(getattr(s, name)).max()
    # every entry belongs to exactly one shell pair
    covered = np.concatenate([p.flat.reshape(-1) for p in plans])
    assert np.array_equal(np.sort(covered), np.arange(len(s.H)))


def test_encoded_features_rotate_by_wigner_d_and_su2(si_sample):
    """Rotating the crystal (blocks by Wigner-D x SU(2)) rotates each encoded irrep by its D."""
    s = si_sample
    table = _table(s)
    plans = plan_blocks(table, s.crystal.numbers, s.edge_index)
    R = random_rotation(11)
    x = encode(table, plans, s.H, s.n_edges)
    xr = encode(table, plans, rotate_sample(s, R).H, s.n_edges)
    expected, i = np.zeros_like(x), 0
    for _, ir in table.irreps():
        d = 2 * ir.l + 1
        expected[:, i:i + d] = x[:, i:i + d] @ wigner_d(ir.l, R).T
        i += d
    assert np.abs(expected - xr).max() < 1e-11 * np.abs(x).max()
    # the spin vector is really used: SOC makes the spin-vector irreps of Si non-zero
    assert np.abs(x).max() > 0


def test_density_input_holds_the_valence_electrons_and_rotates_like_h0(si_sample):
    """The density operator of H0's eigenstates: Tr(S(k)^-1 rho(k)) averaged over the grid is the
    valence electron count, its blocks are Hermitian partners, and rotating the crystal rotates them by
    Wigner-D x SU(2) exactly as it rotates H0's blocks."""
    from baselines.nextham.density import density_blocks, density_kspace
    from baselines.nextham.graph import _hermitian_partner
    from materials_ham.kspace import monkhorst_pack

    s = si_sample
    rho, Sk, mu = density_kspace(s, monkhorst_pack((3, 3, 3)), width=0.1)
    n = s.nao
    per_k = sum(np.einsum("kab,kba->k", np.linalg.inv(Sk), rho[:, a * n:(a + 1) * n, a * n:(a + 1) * n])
                for a in range(2))
    assert abs(per_k.real.mean() - s.n_electrons) < 1e-8 and np.abs(per_k.imag).max() < 1e-10
    assert mu == mu and per_k.real.min() > 0
    everything = np.arange(s.n_edges)
    d = density_blocks(s, everything)
    assert d.shape == s.H0.shape and np.abs(d).max() > 0.1
    assert np.abs(d - d[_hermitian_partner(s, everything)].conj()).max() < 1e-12
    R = random_rotation(5)
    as_h = s.copy()
    as_h.H = d
    expected = rotate_sample(as_h, R).H
    assert np.abs(density_blocks(rotate_sample(s, R), everything) - expected).max() < 1e-10
    # a subset of the edges gives the same blocks, in the subset's order
    sub = everything[::-7]
    pos = np.concatenate([np.arange(4 * s.block_offsets[e], 4 * s.block_offsets[e + 1]) for e in sub])
    np.testing.assert_allclose(density_blocks(s, sub), d[pos], atol=1e-14)


def test_grouped_layout_is_a_permutation():
    table = SlotTable.from_shells({14: (0, 0, 1, 1, 2), 1: (0, 0, 1)})
    cols = table.grouped_columns()
    assert np.array_equal(np.sort(cols), np.arange(table.dim))
    assert table.grouped_irreps().dim == table.dim
    # no universal padding: only shells that some element has
    assert {s[0] for s in table.slots} == {0, 1, 2} and table.n_slots == 25


# ---------------------------------------------------------------------------- the network
def test_prediction_rotates_with_the_structure(si_sample):
    s = si_sample
    table = _table(s)
    m = _model(table)
    R = random_rotation(3)
    g, g_rot = _graph(s, table), _graph(rotate_sample(s, R), table)
    pred = s.copy()
    pred.H = _full(m, g)
    expected = rotate_sample(pred, R).H
    got = _full(m, g_rot)
    scale = np.abs(expected).max()
    assert scale > 1e-4                               # a non-trivial correction
    assert np.abs(expected - got).max() < 1e-8 * scale


def test_prediction_is_invariant_to_inversion_parity(si_sample):
    """Inversion: positions -> -r, orbitals pick up (-1)^l, spin is axial (unchanged)."""
    s = si_sample
    table = _table(s)
    m = _model(table)
    inv = s.copy()
    inv.crystal = type(s.crystal)(s.crystal.numbers, -s.crystal.positions, -s.crystal.cell, s.crystal.pbc)
    sign = {z: np.concatenate([np.full(2 * l + 1, (-1.0) ** l) for l in b.ls]) for z, b in s.basis.items()}

    def flip(flat, spinor):
        out = flat.copy()
        for e, (i, j) in enumerate(s.edge_index):
            a, b = s.block_offsets[e], s.block_offsets[e + 1]
            si, sj = sign[int(s.crystal.numbers[i])], sign[int(s.crystal.numbers[j])]
            if spinor:
                si, sj = np.tile(si, 2), np.tile(sj, 2)
                a, b = 4 * a, 4 * b
            ni, nj = len(si), len(sj)
            out[a:b] = (flat[a:b].reshape(ni, nj) * si[:, None] * sj[None, :]).reshape(-1)
        return out
    inv.H, inv.H0, inv.S = flip(s.H, True), flip(s.H0, True), flip(s.S, False)
    g, g_inv = _graph(s, table), _graph(inv, table)
    got = _full(m, g_inv)
    expected = flip(_full(m, g), True)
    assert np.abs(expected - got).max() < 1e-10 * np.abs(expected).max()


def test_prediction_is_invariant_to_translation_and_atom_permutation(gaas_sample):
    s = gaas_sample
    table = _table(s)
    m = _model(table, seed=1)
    g = _graph(s, table)
    ref = _full(m, g)

    moved = s.copy()
    moved.crystal = type(s.crystal)(s.crystal.numbers, s.crystal.positions + [0.37, -1.2, 2.9], s.crystal.cell,
                                    s.crystal.pbc)
    gm = _graph(moved, table)
    assert np.abs(_full(m, gm) - ref).max() < 1e-10 * np.abs(ref).max()

    # swap the two atoms: same edge order, atom labels exchanged -> same blocks per edge
    perm = np.array([1, 0])
    swapped = s.copy()
    swapped.crystal = type(s.crystal)(s.crystal.numbers[perm], s.crystal.positions[perm], s.crystal.cell, s.crystal.pbc)
    swapped.edge_index = np.argsort(perm)[s.edge_index]
    gs = _graph(swapped, table)
    assert np.abs(_full(m, gs) - ref).max() < 1e-10 * np.abs(ref).max()


def test_prediction_is_hermitian_and_far_edges_keep_h0(gaas_sample):
    """Edges beyond the last range keep H0 without the operator terms; with them, only unscored
    edges (>= 8 A) do, unless the terms act on every stored edge: then no edge keeps H0."""
    from dataclasses import replace

    from materials_ham.conventions import HEADLINE_EDGE_CUTOFF
    from materials_ham.evaluate.predictions import EdgeLayout

    s = gaas_sample
    table = _table(s)
    lengths = np.repeat(s.edge_lengths(), 4 * s.block_sizes)
    local = replace(SMALL, terms_on_all_edges=False)
    for cfg, edge in ((replace(local, onsite_operator=False, projector_operator=False), SMALL.ranges[-1][1]),
                      (replace(local, projector_operator=False), HEADLINE_EDGE_CUTOFF),
                      (replace(local, onsite_operator=False), HEADLINE_EDGE_CUTOFF),
                      (SMALL, np.inf)):
        m = _model(table, cfg=cfg)
        H = m.predict_flat(_graph(s, table, cfg), s.H0)
        err, _ = EdgeLayout.from_sample(s).hermiticity_error(H)
        assert err < 1e-12
        beyond = lengths >= edge
        assert np.array_equal(H[beyond], s.H0[beyond])
        assert np.abs(H - s.H0)[~beyond & (lengths >= HEADLINE_EDGE_CUTOFF if edge == np.inf else ~beyond)].max() > 0
        assert beyond.any() == (edge != np.inf)


def test_onsite_operator_term_is_half_s_x_plus_x_s_in_real_and_reciprocal_space(gaas_sample):
    """The operator term on every scored edge is 1/2 (S_ij(R) X_j + X_i S_ij(R)) (S x I2, spin-major),
    so its Bloch sum is 1/2 (S(k) X + X S(k)) with the S of the scored edges: a correction whose
    Rayleigh quotient on S(k)'s near-null space stays bounded by |X|."""
    s = gaas_sample
    table = _table(s)
    g = _graph(s, table)
    n = s.orbitals_per_atom
    Xs, x = _random_operators(s, g, 3)
    got = NextHAM._operator_term(g, torch.from_numpy(x)).numpy()

    from materials_ham.gauge import scored_edges

    scored = scored_edges(s)
    pos = 0
    for e in scored:
        i, j = s.edge_index[e]
        S = np.kron(np.eye(2), s.block("S", e))
        want = 0.5 * (S @ Xs[j] + Xs[i] @ S)
        assert np.allclose(got[pos:pos + want.size], want.reshape(-1), atol=1e-12)
        pos += want.size
    assert pos == len(got)

    # reciprocal space: T(k) = 1/2 (S_scored(k) X + X S_scored(k)), Bloch sums by materials_ham.kspace
    from materials_ham.kspace import bloch

    k = np.array([[0.13, -0.27, 0.41]])
    nao, off = s.nao, s.orbital_offsets
    T = np.zeros(g.n_full, complex)
    T[g.scored_take] = got
    keep = np.repeat(np.isin(np.arange(s.n_edges), scored), s.block_sizes)
    Sk = bloch(s, "S", k, flat=np.where(keep, s.S, 0.0))[0]
    Sk = np.kron(np.eye(2), Sk)
    X = np.zeros_like(Sk)
    for a in range(s.n_atoms):
        idx = np.concatenate([off[a] + np.arange(n[a]), nao + off[a] + np.arange(n[a])])
        X[np.ix_(idx, idx)] = Xs[a]
    assert np.allclose(bloch(s, "H", k, flat=T)[0], 0.5 * (Sk @ X + X @ Sk), atol=1e-10)


def _random_operators(s, g, seed):
    """Random Hermitian spinor operators per atom, as a list and in the on-site blocks of a flat array."""
    rng = np.random.default_rng(seed)
    n = s.orbitals_per_atom
    ops, flat = [], np.zeros(len(g.h0), complex)
    for a in range(s.n_atoms):
        A = rng.normal(size=(2 * n[a], 2 * n[a])) + 1j * rng.normal(size=(2 * n[a], 2 * n[a]))
        ops.append(A + A.conj().T)
        flat[int(g.onsite_start[a]):int(g.onsite_start[a]) + 4 * n[a] ** 2] = ops[-1].reshape(-1)
    return ops, flat


@pytest.mark.parametrize("threshold", [1e-2, 1e-4])
def test_projector_term_is_s_y_s_summed_over_the_kept_legs(gaas_sample, threshold):
    """The projector term on every scored edge ij(R) is sum over atoms k and shifts R1 of
    (S_ik(R1) x I2) Y_k (S_kj(R - R1) x I2), over the kept legs: checked against
    a brute-force sum over every pair of stored overlap blocks with |S|_F >= threshold; a lower
    threshold keeps more legs."""
    from dataclasses import replace

    from materials_ham.gauge import scored_edges

    s = gaas_sample
    table = _table(s)
    g = _graph(s, table, replace(SMALL, projector_threshold=threshold))
    Ys, y = _random_operators(s, g, 5)
    got = NextHAM._projector_term(g, torch.from_numpy(y)).numpy()

    legs = {}
    for e, (i, j) in enumerate(s.edge_index):
        S = s.block("S", e)
        if np.linalg.norm(S) >= threshold:
            legs[(int(i), int(j), tuple(s.edge_shift[e].tolist()))] = np.kron(np.eye(2), S)
    pos = n_terms = 0
    for e in scored_edges(s):
        i, j = (int(a) for a in s.edge_index[e])
        R = s.edge_shift[e]
        want = np.zeros((2 * s.orbitals_per_atom[i], 2 * s.orbitals_per_atom[j]), complex)
        for (a, k, R1), S1 in legs.items():
            S2 = legs.get((k, j, tuple((R - np.array(R1)).tolist()))) if a == i else None
            if S2 is not None:
                want += S1 @ Ys[k] @ S2
                n_terms += 1
        assert np.allclose(got[pos:pos + want.size], want.reshape(-1), atol=1e-10)
        pos += want.size
    assert pos == len(got)
    assert n_terms == sum(len(q.left) for q in g.proj_groups) > 0
    if threshold < 1e-2:
        coarse = _graph(s, table, SMALL)
        assert sum(len(q.left) for q in coarse.proj_groups) < n_terms


def test_operator_terms_on_every_edge_match_brute_force_and_the_loss_sees_them(gaas_sample):
    """With ``terms_on_all_edges`` the far edges (stored, >= 8 A) get 1/2 (S X + X S) + S Y S with the
    model's own X and Y (brute force per edge), and the reciprocal-space loss's D(k) equals the
    Bloch sum of the written prediction minus H.  (For S Y S this holds where every product
    S_ik Y_k S_kj lands on a stored edge, as on this fixture; products landing beyond the stored
    edges are in the loss's S_legs(k) Y S_legs(k) but not in the prediction.)"""
    from materials_ham.gauge import scored_edges
    from materials_ham.kspace import bloch

    from baselines.nextham.loss import operator_terms_k

    s = gaas_sample
    table = _table(s)
    m = _model(table, seed=2)
    g = _graph(s, table, kspace_grid=2)
    out = m(g)
    H = m.predict_flat(g, s.H0)
    n, nao = s.orbitals_per_atom, s.nao

    def atom_blocks(flat):
        return [flat[int(g.onsite_start[a]):int(g.onsite_start[a]) + 4 * n[a] ** 2].detach().numpy().reshape(2 * n[a], 2 * n[a])
                for a in range(s.n_atoms)]
    X, Y = atom_blocks(out.x), atom_blocks(out.y)
    assert all(np.allclose(a, a.conj().T) for a in X + Y)
    legs = {}
    for e, (i, j) in enumerate(s.edge_index):
        if np.linalg.norm(s.block("S", e)) >= SMALL.projector_threshold:
            legs[(int(i), int(j), tuple(s.edge_shift[e].tolist()))] = np.kron(np.eye(2), s.block("S", e))
    far = np.setdiff1d(np.arange(s.n_edges), scored_edges(s))
    assert len(far) > 0
    for e in far:
        i, j = (int(a) for a in s.edge_index[e])
        R = s.edge_shift[e]
        S = np.kron(np.eye(2), s.block("S", e))
        want = 0.5 * (S @ X[j] + X[i] @ S)
        for (a, k, R1), S1 in legs.items():
            S2 = legs.get((k, j, tuple((R - np.array(R1)).tolist()))) if a == i else None
            if S2 is not None:
                want += S1 @ Y[k] @ S2
        a, b = 4 * s.block_offsets[e], 4 * s.block_offsets[e + 1]
        assert np.allclose(H[a:b] - s.H0[a:b], want.reshape(-1), atol=1e-12)

    # k-space: each term's Bloch sum over every stored edge against the loss's closed form
    k = 1
    kpt = g.kpts[k:k + 1].numpy()
    Output = type(out)
    for name, term, only in (("x", m._operator_term, Output(out.dh, [], [], out.free, out.x, None)),
                             ("y", m._projector_term, Output(out.dh, [], [], out.free, None, out.y))):
        op = out.x if name == "x" else out.y
        flat = np.zeros(g.n_full, complex)
        flat[g.scored_take] = term(g, op).detach().numpy()
        flat[g.far_take] = term(g, op, far=True).detach().numpy()
        T = operator_terms_k(g, only, k).detach().numpy()
        err = np.abs(bloch(s, "H", kpt, flat=flat)[0] - T).max() / np.abs(T).max()
        assert err < 1e-12, (name, err)

    # and the loss's D(k) is the Bloch sum of the written prediction minus H
    phase = np.exp(2j * np.pi * (g.scored_shift.numpy() @ g.kpts[k].numpy()))
    D = np.zeros(4 * nao * nao, complex)
    np.add.at(D, g.kpos.numpy(), (g.h0 + out.free - g.h).detach().numpy() * phase[g.entry_edge.numpy()])
    Dk = D.reshape(2 * nao, 2 * nao) + g.k_far[k].numpy() + operator_terms_k(g, out, k).detach().numpy()
    true = bloch(s, "H", kpt, flat=H - s.H)[0]
    assert np.abs(Dk - true).max() < 1e-10 * np.abs(true).max()


def test_projector_term_on_every_edge_is_bounded_in_an_s_orthonormal_basis(gaas_sample):
    """S^-1/2 (S Y S) S^-1/2 = S^1/2 Y S^1/2: with the term on every stored edge and every leg kept,
    its norm in an S(k)-orthonormal basis is at most |S(k)| |Y| at any k, so an ill-conditioned
    overlap cannot amplify it (a free correction's error e can move a state by e / lambda_min)."""
    from dataclasses import replace

    from materials_ham.kspace import bloch

    s = gaas_sample
    table = _table(s)
    cfg = replace(SMALL, projector_threshold=0.0)
    g = _graph(s, table, cfg)
    Ys, y = _random_operators(s, g, 7)
    flat = np.zeros(g.n_full, complex)
    yt = torch.from_numpy(y)
    flat[g.scored_take] = NextHAM._projector_term(g, yt).numpy()
    flat[g.far_take] = NextHAM._projector_term(g, yt, far=True).numpy()
    y_norm = max(np.linalg.norm(a, 2) for a in Ys)
    for kpt in np.random.default_rng(0).uniform(-0.5, 0.5, size=(3, 3)):
        T = bloch(s, "H", kpt[None], flat=flat)[0]
        S = np.kron(np.eye(2), bloch(s, "S", kpt[None])[0])
        Linv = np.linalg.inv(np.linalg.cholesky(S))
        amplified = np.linalg.norm(Linv @ T @ Linv.conj().T, 2)
        assert amplified <= np.linalg.norm(S, 2) * y_norm * (1 + 1e-9)
        assert amplified > 1e-3 * y_norm


def test_projector_term_needs_its_plan(gaas_sample):
    s = gaas_sample
    table = _table(s)
    from dataclasses import replace

    g = _graph(s, table, replace(SMALL, projector_operator=False))
    with pytest.raises(ValueError, match="projector plan"):
        NextHAM._projector_term(g, torch.zeros(len(g.h0), dtype=torch.complex128))


# ------------------------------------------------------------------------------- training
def test_loss_goes_down_on_a_real_structure_on_cpu(gaas_sample):
    """25 Adam steps of a tiny float32 model on GaAs (real + k-space + trace loss): the losses drop."""
    s = gaas_sample
    table = _table(s)
    cfg = ModelConfig(mul={0: 4, 1: 2, 2: 2, 3: 1, 4: 1, 5: 1}, n_blocks=1, heads=2, n_rbf=8, radial_hidden=8,
                      cutoff=4.0, ranges=[[0.0, 4.0]], input_scale=0.5, target_scale=0.02, node_scale=0.2,
                      edge_scale=0.01)
    g = _graph(s, table, cfg, dtype=torch.float32, kspace_grid=2)
    torch.manual_seed(0)
    m = NextHAM(cfg, table)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    history = []
    for _ in range(25):
        opt.zero_grad()
        loss, parts = total_loss(g, m(g), LossWeights(), rng)
        loss.backward()
        opt.step()
        history.append(parts)
    assert {"real_mev", "p_mev", "q_mev", "pq_mev", "trace", "loss"} <= set(history[0])
    # the model starts at H0 exactly (zero-initialised head) and moves away from it downhill
    real = [h["real_mev"] for h in history]
    total = [h["loss"] for h in history]
    assert np.mean(real[-3:]) < 0.99 * np.mean(real[:3]), real
    assert np.mean(total[-3:]) < np.mean(total[:3]), total
    assert sum(b < a for a, b in zip(real[1:], real[2:])) >= 18, real      # steadily, not by luck


# ------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def train_dataset(tmp_path_factory, si_fixture_path, gaas_sample, pbte_sample):
    from materials_ham.store import write_store

    items = []
    for sid, s, split in (("si", load_sample(si_fixture_path), "train"), ("gaas", gaas_sample, "train"),
                          ("pbte", pbte_sample, "val"), ("si-test", load_sample(si_fixture_path), "test")):
        items.append((s, {"id": sid, "formula": s.crystal.formula, "split": split,
                          "elements": sorted(set(s.crystal.to_ase().get_chemical_symbols()))}))
    root = tmp_path_factory.mktemp("nextham") / "dataset"
    write_store(root, items, attrs={"dataset_name": "nextham-test", "dataset_version": "t1"}, shard_mib=2,
                progress=False)
    return root


def test_train_resume_predict_and_score_through_the_cli(train_dataset, tmp_path):
    from baselines.nextham.__main__ import main
    from materials_ham import Evaluator

    run = tmp_path / "run"
    assert main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(run), "--epochs", "2"]) == 0
    first = json.loads((run / "last" / "checkpoint.json").read_text())
    assert first["epoch"] == 2 and len(first["history"]) == 2 and first["best_val_mev"] is not None
    # resume to 3 epochs: continues from epoch 2, keeps the history
    assert main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(run), "--epochs", "3"]) == 0
    meta = json.loads((run / "last" / "checkpoint.json").read_text())
    assert meta["epoch"] == 3 and [h["epoch"] for h in meta["history"]] == [1, 2, 3]
    assert (run / "best" / "model.safetensors").exists() and not list(run.glob("*.pkl"))

    preds = tmp_path / "preds.zarr"
    assert main(["predict", "--checkpoint", str(run / "best"), "--dataset", str(train_dataset), "--split", "test",
                 "-o", str(preds)]) == 0
    metrics = Evaluator(train_dataset, split="test", bands=False).eval(str(preds))
    h0 = Evaluator(train_dataset, split="test", bands=False).eval(_h0_predictions(train_dataset))
    assert np.isfinite(metrics["headline"]["spin_diag_real_mev"])
    assert metrics["headline"]["spin_diag_real_mev"] != h0["headline"]["spin_diag_real_mev"]

    # an ensemble: repeated --checkpoint writes the mean of the models' predicted H
    from materials_ham.evaluate.predictions import read_predictions
    run2, one, ens = tmp_path / "run2", tmp_path / "one.zarr", tmp_path / "ens.zarr"
    assert main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(run2), "--epochs", "1",
                 "--seed", "1"]) == 0
    assert main(["predict", "--checkpoint", str(run2 / "best"), "--dataset", str(train_dataset), "--split", "test",
                 "-o", str(one)]) == 0
    assert main(["predict", "--checkpoint", str(run / "best"), "--checkpoint", str(run2 / "best"), "--dataset",
                 str(train_dataset), "--split", "test", "-o", str(ens)]) == 0
    a, b, m = (read_predictions(p, train_dataset, "test") for p in (preds, one, ens))
    assert "mean H of 2 checkpoints" in m.model
    for sid in a:
        ha, hb, hm = a.read_half(sid), b.read_half(sid), m.read_half(sid)
        assert np.abs(ha - hb).max() > 1e-6      # two models (their small corrections differ) ...
        np.testing.assert_allclose(hm, 0.5 * (ha + hb), rtol=0, atol=1e-12)   # ... and their mean (complex128)


def test_training_without_cached_graphs_matches_the_cached_run(train_dataset, tmp_path):
    """cache_graphs=False (one structure in memory at a time) trains the same model, step for step."""
    from baselines.nextham.train import read_config, train

    states = []
    for cached in (True, False):
        cfg = read_config("tiny")
        cfg.train.epochs, cfg.train.cache_graphs, cfg.train.dtype = 1, cached, "float64"
        states.append(train(train_dataset, cfg, tmp_path / f"run-{cached}", progress=False, log=lambda m: None,
                            resume=False))
    a, b = (s["history"][0] for s in states)
    assert a["train_real_mev"] == pytest.approx(b["train_real_mev"], rel=1e-9)
    assert a["val_gauge_mae_mev"] == pytest.approx(b["val_gauge_mae_mev"], rel=1e-9)


def _h0_predictions(dataset):
    from materials_ham import load_dataset

    ds = load_dataset(dataset, split="test")
    return {sid: ds[k].H0 for k, sid in enumerate(ds.ids)}


def test_every_shipped_config_reads():
    from baselines.nextham.train import CONFIG_DIR, read_config

    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"tiny", "cpu", "paper", "cpu-projector-only", "cpu-projector-only-finetune"} <= set(names)
    for name in names:
        cfg = read_config(name)
        assert cfg.train.epochs > 0 and cfg.model.ranges, name
    for base_name in ("cpu-projector-only", "cpu-projector-density"):
        tune, base = read_config(base_name + "-finetune"), read_config(base_name)
        assert tune.model == base.model and tune.train.lr < base.train.lr, base_name


def test_bad_config_and_checkpoint_get_one_line_errors(train_dataset, tmp_path, capsys):
    from baselines.nextham.__main__ import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_blocks: 2\n  colour: blue\n")
    assert main(["train", "--dataset", str(train_dataset), "--config", str(bad), "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert "colour" in err and "Traceback" not in err
    not_ckpt = tmp_path / "nockpt"
    not_ckpt.mkdir()
    (not_ckpt / "checkpoint.json").write_text('{"format": "pickle"}')
    assert main(["predict", "--checkpoint", str(not_ckpt), "--dataset", str(train_dataset), "-o",
                 str(tmp_path / "p.zarr")]) != 0
    err = capsys.readouterr().err
    assert "not a NextHAM checkpoint" in err and not (tmp_path / "p.zarr").exists()


# ------------------------------------------------------------------ extra training datasets
def _pack(root, entries, **attrs):
    from materials_ham.store import write_store

    items = [(s, {"id": sid, "formula": s.crystal.formula, "split": split,
                  "elements": sorted(set(s.crystal.to_ase().get_chemical_symbols()))}) for sid, s, split in entries]
    return write_store(root, items, attrs={"dataset_name": "extra", "dataset_version": "t1", **attrs},
                       shard_mib=2, progress=False)


def test_extra_training_dataset_joins_the_training_split(train_dataset, gaas_sample, tmp_path):
    """--extra-train: the extra dataset's train split is trained on too (here GaAs under a new id,
    beside the main dataset's Si and GaAs), and its val/test structures are not."""
    from baselines.nextham.train import read_config, train

    extra = _pack(tmp_path / "extra", [("gaas-again", gaas_sample, "train"), ("gaas-val", gaas_sample, "val")])
    lines = []
    cfg = read_config("tiny")
    cfg.train.epochs, cfg.train.validate_every, cfg.train.extra_train = 1, 100, [str(extra)]
    state = train(train_dataset, cfg, tmp_path / "run", progress=False, log=lines.append, resume=False)
    assert any("3 training / 1 validation structures" in m for m in lines), lines
    assert any(f"{extra}: 1 structures" in m for m in lines), lines
    assert state["train"]["extra_train"] == [str(extra)]


def test_extra_training_dataset_must_not_leak_or_mix_engines(train_dataset, si_fixture_path, pbte_sample,
                                                             gaas_sample, tmp_path, capsys):
    """One-line errors, before any training: a structure equivalent to a test structure of the main
    dataset (the Si cell under another id), one with the id of a training structure (it would be
    trained on twice), one with the id of a validation structure, and a dataset computed with other
    engine settings."""
    import dataclasses

    from baselines.nextham.__main__ import main

    si = load_sample(si_fixture_path)
    other = dataclasses.replace(gaas_sample, engine={**gaas_sample.engine,
                                                     "settings": {**gaas_sample.engine["settings"], "h": 0.25}})
    cases = {"equivalent to si-test, a test structure": [("si-renamed", si, "train")],
             "already training structures (gaas)": [("gaas", gaas_sample, "train")],
             "are validation or test structures of the main dataset (pbte)": [("pbte", pbte_sample, "train")],
             "other engine settings": [("gaas-h025", other, "train")]}
    for k, (expected, entries) in enumerate(cases.items()):
        extra = _pack(tmp_path / f"extra{k}", entries)
        run = tmp_path / f"run{k}"
        code = main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(run), "--epochs", "1",
                     "--extra-train", str(extra)])
        err = capsys.readouterr().err
        assert code != 0 and expected in err and "Traceback" not in err, err
        assert not (run / "last").exists()


# ------------------------------------------------------------------------------ fine-tuning
def test_init_starts_from_a_checkpoint_and_checks_what_it_was_trained_on(train_dataset, si_fixture_path,
                                                                         gaas_sample, pbte_sample, tmp_path, capsys):
    """--init CHECKPOINT: training starts from its weights (at a vanishing learning rate it ends with
    them, where a fresh run ends with its random initial weights), the run records it, and
    one-line errors refuse a checkpoint built without the training data's elements or trained on a
    structure equivalent to a validation/test structure of the dataset."""
    from baselines.nextham.__main__ import main

    base = tmp_path / "base"
    assert main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(base), "--epochs", "3",
                 "--lr", "0.05"]) == 0
    from safetensors.torch import load_file

    weights = lambda run: load_file(str(run / "model.safetensors"))  # noqa: E731
    start = weights(base / "best")
    gap = {}
    for name, extra in (("tuned", ["--init", str(base / "best")]), ("fresh", [])):
        assert main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(tmp_path / name),
                     "--epochs", "1", "--lr", "1e-12", *extra]) == 0
        end = weights(tmp_path / name / "last")
        gap[name] = max(float((end[k] - v).abs().max()) for k, v in start.items() if v.numel())
    assert gap["tuned"] < 1e-6 < 1e-2 < gap["fresh"], gap
    meta = json.loads((tmp_path / "tuned" / "last" / "checkpoint.json").read_text())
    assert meta["init"]["checkpoint"] == str(base / "best")
    assert "init" not in json.loads((tmp_path / "fresh" / "last" / "checkpoint.json").read_text())
    capsys.readouterr()

    si = load_sample(si_fixture_path)
    cases = {"built without the elements Ga, As, Te, Pb": [("si-only", si, "train"), ("si-v", si, "val")],
             "trained on by the starting checkpoint": [("si-renamed", si, "train"), ("gaas-x", gaas_sample, "train"),
                                                       ("pbte-x", pbte_sample, "train"), ("gaas-v", gaas_sample, "val")]}
    for k, (expected, entries) in enumerate(cases.items()):
        other = _pack(tmp_path / f"other{k}", entries)
        assert main(["train", "--dataset", str(other), "--config", "tiny", "--out", str(tmp_path / f"o{k}"),
                     "--epochs", "1"]) == 0
        run = tmp_path / f"bad{k}"
        code = main(["train", "--dataset", str(train_dataset), "--config", "tiny", "--out", str(run), "--epochs", "1",
                     "--init", str(tmp_path / f"o{k}" / "best")])
        err = capsys.readouterr().err
        assert code != 0 and expected in err and "Traceback" not in err, err
        assert not (run / "last").exists()
