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
