"""The sample format: layout, exact round trip, clear errors on bad files."""
import numpy as np
import pytest

from materials_ham import Crystal, FormatError, load_sample
from materials_ham.sample import MATRICES, Sample


def test_layout_matches_basis(si_sample):
    s = si_sample
    assert s.nao == 26 and s.orbitals_per_atom.tolist() == [13, 13]
    assert s.basis[14].ls == (0, 1, 0, 1, 2)
    e = 5
    assert s.block("S", e).shape == (13, 13)
    assert s.block("H", e).shape == (26, 26) and s.block("H", e).dtype == np.complex128
    # block() is a view into the flat array
    s.block("S", e)[0, 0] = 42.0
    assert s.S[s.block_offsets[e]] == 42.0


def test_every_edge_has_its_reverse(si_sample):
    s = si_sample
    r = s.edge_reverse
    np.testing.assert_array_equal(s.edge_index[r], s.edge_index[:, ::-1])
    np.testing.assert_array_equal(s.edge_shift[r], -s.edge_shift)


def test_save_load_is_bit_identical(si_sample, tmp_path):
    p = si_sample.save(tmp_path / "x.npz")
    s2 = load_sample(p)
    for name in MATRICES + ("edge_index", "edge_shift", "edge_reverse", "ref_eigenvalues", "ref_kpts"):
        a, b = getattr(si_sample, name), getattr(s2, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert s2.fermi_level == si_sample.fermi_level
    assert s2.engine == si_sample.engine
    # only the canonical half of the edges is on disk
    with np.load(p) as z:
        assert len(z["edge_index"]) == len(si_sample.canonical_edges()) < si_sample.n_edges


def test_save_is_atomic_and_leaves_no_temp(si_sample, tmp_path):
    si_sample.save(tmp_path / "a.npz")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.npz"]


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04garbage"])
def test_bad_file_is_a_clear_format_error(tmp_path, content):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(FormatError, match="bad.npz"):
        load_sample(p)


def test_truncated_matrix_is_detected(si_sample, tmp_path):
    p = si_sample.save(tmp_path / "s.npz")
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["H"] = arrays["H"][:-10]
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(FormatError, match="shorter|entries"):
        load_sample(tmp_path / "t.npz")


def test_missing_reverse_edge_is_refused():
    from materials_ham import Basis

    c = Crystal([1, 1], [[0, 0, 0], [0.8, 0, 0]], np.eye(3) * 5)
    basis = {1: Basis("test", "s", (0,))}
    with pytest.raises(FormatError, match="reverse"):
        Sample.from_blocks(c, basis, {(0, 1, (0, 0, 0)): {"S": np.ones((1, 1))}}, fermi_level=0, n_electrons=2,
                           ref_kpts=np.zeros((1, 3)), ref_eigenvalues=np.zeros((1, 4)))


# ------------------------------------------------------------------- block gathering (one primitive)
def _naive_gather(src, offsets, rows, cols, flip):
    """gather_blocks, one block at a time."""
    parts = []
    for o, r, c, f in zip(offsets, rows, cols, flip):
        b = src[o:o + r * c].reshape(r, c)
        parts.append((b.conj().T if f else b).reshape(-1))
    return np.concatenate(parts) if parts else src[:0].copy()


@pytest.mark.parametrize("dtype", [np.complex128, np.float64])
def test_gather_blocks_equals_a_per_block_loop(dtype):
    from materials_ham.sample import _block_runs, gather_blocks

    rng = np.random.default_rng(1)
    shapes = [(2, 3), (4, 4), (3, 2), (1, 5)]
    # a source of blocks, then picks: ascending copies (mixed shapes), descending flipped runs, singletons
    kinds = [k % 4 if not 20 <= k < 30 else 1 for k in range(40)]    # blocks 20-29 back to back, all (4, 4)
    rows = np.array([shapes[k][0] for k in kinds])
    cols = np.array([shapes[k][1] for k in kinds])
    off = np.concatenate([[0], np.cumsum(rows * cols)])
    src = rng.normal(size=int(off[-1])) + (1j * rng.normal(size=int(off[-1])) if dtype is np.complex128 else 0)
    src = src.astype(dtype)
    same = np.arange(20, 30)
    pick = list(range(0, 12)) + list(same[::-1]) + [7, 3, 3] + list(same[2:5])
    flip = np.array([False] * 12 + [True] * len(same) + [True, False, True] + [True] * 3)
    pick = np.array(pick)
    got = gather_blocks(src, off[pick], rows[pick], cols[pick], flip)
    want = _naive_gather(src, off[pick], rows[pick], cols[pick], flip)
    assert got.dtype == src.dtype and got.tobytes() == want.tobytes()
    runs = _block_runs(off[pick], rows[pick], cols[pick], flip)
    assert (0, 12) in runs and (12, 12 + len(same)) in runs           # one copy per run, not per block
    assert gather_blocks(src, off[:0], rows[:0], cols[:0], flip[:0]).shape == (0,)


def test_from_half_can_leave_matrices_out(si_sample):
    from materials_ham.sample import HalfEdges

    s = si_sample
    keep = s.canonical_edges()
    mask = np.zeros(s.n_edges, bool)
    mask[keep] = True
    half = {name: getattr(s, name)[np.repeat(mask, (4 if name != "S" else 1) * s.block_sizes)] for name in MATRICES}
    only_s = Sample.from_half(s.crystal, s.basis, s.edge_index[keep], s.edge_shift[keep], None, None, half["S"],
                              fermi_level=s.fermi_level, n_electrons=s.n_electrons, ref_kpts=s.ref_kpts,
                              ref_eigenvalues=s.ref_eigenvalues)
    assert only_s.H is None and only_s.H0 is None and only_s.matrices == ("S",)
    assert only_s.S.tobytes() == s.S.tobytes() and np.array_equal(only_s.edge_reverse, s.edge_reverse)
    assert only_s.block("S", 3).shape == (13, 13)
    with pytest.raises(FormatError, match="H0 was not read"):
        only_s.block("H0", 3)
    only_s.symmetrize()                                                # leaves the absent matrices alone
    edges = HalfEdges.build(s.crystal, s.basis, s.edge_index[keep], s.edge_shift[keep])
    assert edges.half_size("H") == len(half["H"]) and edges.half_size("S") == len(half["S"])
    assert edges.full("H", half["H"]).tobytes() == s.H.tobytes()
