"""Tests for materials_ham.rotations (real SH convention, Wigner-D, SU(2))."""

import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y
from scipy.spatial.transform import Rotation

from materials_ham.rotations import (
    orbital_rotation,
    random_rotation,
    real_spherical_harmonics,
    rotate_block,
    spinor_rotation,
    su2,
    wigner_d,
)

PI = np.pi
PAULI = np.array(
    [[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=np.complex128
)


def _points(n=64, seed=0):
    """Random, non-unit vectors (shape (n, 3))."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * rng.uniform(0.3, 3.0, size=(n, 1))


def _unit_points(n=64, seed=1):
    v = _points(n, seed)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rotations():
    """Generic random rotations plus awkward ones (axes, gimbal lock, pi)."""
    rots = [random_rotation(s) for s in range(6)]
    rots += [
        np.eye(3),
        Rotation.from_rotvec([0, 0, 0.3]).as_matrix(),
        Rotation.from_rotvec([1e-9, 2e-9, 0.3]).as_matrix(),  # nearly about z
        Rotation.from_rotvec([PI, 0, 0]).as_matrix(),  # flips z
        Rotation.from_rotvec([PI, 0, 1e-8]).as_matrix(),
        Rotation.from_rotvec([0, PI, 0]).as_matrix(),
        Rotation.from_rotvec([0, 0, PI]).as_matrix(),
        Rotation.from_rotvec(PI * np.array([1, 1, 1]) / np.sqrt(3)).as_matrix(),
        Rotation.from_rotvec([0.0, 0.7, 0.0]).as_matrix(),
        np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # C3 (x->z)
    ]
    return rots


# ---------------------------------------------------------------------------
# (1) explicit Wikipedia real spherical harmonics, independent reference
# ---------------------------------------------------------------------------


def _wiki_real_sh(l, v):
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    r = np.sqrt(x * x + y * y + z * z)
    x, y, z = x / r, y / r, z / r  # formulas below on the unit sphere (r = 1)
    if l == 0:
        cols = [np.full_like(x, 0.5 * np.sqrt(1 / PI))]
    elif l == 1:
        c = np.sqrt(3 / (4 * PI))
        cols = [c * y, c * z, c * x]
    elif l == 2:
        cols = [
            np.sqrt(15 / (4 * PI)) * x * y,
            np.sqrt(15 / (4 * PI)) * y * z,
            np.sqrt(5 / (16 * PI)) * (3 * z**2 - 1),
            np.sqrt(15 / (4 * PI)) * z * x,
            np.sqrt(15 / (16 * PI)) * (x**2 - y**2),
        ]
    elif l == 3:
        cols = [
            0.25 * np.sqrt(35 / (2 * PI)) * y * (3 * x**2 - y**2),
            0.5 * np.sqrt(105 / PI) * x * y * z,
            0.25 * np.sqrt(21 / (2 * PI)) * y * (5 * z**2 - 1),
            0.25 * np.sqrt(7 / PI) * z * (5 * z**2 - 3),
            0.25 * np.sqrt(21 / (2 * PI)) * x * (5 * z**2 - 1),
            0.25 * np.sqrt(105 / PI) * z * (x**2 - y**2),
            0.25 * np.sqrt(35 / (2 * PI)) * x * (x**2 - 3 * y**2),
        ]
    elif l == 4:
        cols = [
            0.75 * np.sqrt(35 / PI) * x * y * (x**2 - y**2),
            0.75 * np.sqrt(35 / (2 * PI)) * y * z * (3 * x**2 - y**2),
            0.75 * np.sqrt(5 / PI) * x * y * (7 * z**2 - 1),
            0.75 * np.sqrt(5 / (2 * PI)) * y * z * (7 * z**2 - 3),
            3 / 16 * np.sqrt(1 / PI) * (35 * z**4 - 30 * z**2 + 3),
            0.75 * np.sqrt(5 / (2 * PI)) * x * z * (7 * z**2 - 3),
            3 / 8 * np.sqrt(5 / PI) * (x**2 - y**2) * (7 * z**2 - 1),
            0.75 * np.sqrt(35 / (2 * PI)) * x * z * (x**2 - 3 * y**2),
            3 / 16 * np.sqrt(35 / PI) * (x**2 * (x**2 - 3 * y**2) - y**2 * (3 * x**2 - y**2)),
        ]
    else:
        raise NotImplementedError(l)
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("l", [0, 1, 2, 3, 4])
def test_real_sh_matches_explicit_wikipedia_formulas(l):
    v = _points()
    ours = real_spherical_harmonics(l, v)
    assert ours.shape == (len(v), 2 * l + 1)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, _wiki_real_sh(l, v), rtol=0, atol=1e-12)


def test_real_sh_l1_axes():
    """l=1 order is (y, z, x) with positive sign."""
    c = np.sqrt(3 / (4 * PI))
    Y = real_spherical_harmonics(1, 2.5 * np.eye(3))  # rows: x, y, z
    np.testing.assert_allclose(Y, c * np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), atol=1e-14)


@pytest.mark.parametrize("l", range(0, 9))
def test_real_sh_matches_scipy_complex_harmonics(l):
    """Y_lm = sqrt2 (-1)^m Im/Re Y_l^|m| (Condon-Shortley cancelled) -> Wikipedia real SH."""
    v = _points(seed=3)
    r = np.linalg.norm(v, axis=1)
    theta = np.arccos(v[:, 2] / r)
    phi = np.arctan2(v[:, 1], v[:, 0])
    ref = np.zeros((len(v), 2 * l + 1))
    for m in range(-l, l + 1):
        Yc = sph_harm_y(l, abs(m), theta, phi)
        if m < 0:
            ref[:, l + m] = np.sqrt(2) * (-1) ** m * Yc.imag
        elif m == 0:
            ref[:, l] = Yc.real
        else:
            ref[:, l + m] = np.sqrt(2) * (-1) ** m * Yc.real
    np.testing.assert_allclose(real_spherical_harmonics(l, v), ref, rtol=0, atol=1e-12)


def test_real_sh_batch_shape():
    v = _points(24).reshape(2, 3, 4, 3)
    assert real_spherical_harmonics(2, v).shape == (2, 3, 4, 5)
    assert real_spherical_harmonics(3, v[0, 0, 0]).shape == (7,)


# ---------------------------------------------------------------------------
# (2) equivariance, (3) orthogonality / homomorphism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("l", [0, 1, 2, 3, 4, 6])
def test_wigner_d_equivariance(l):
    v = _points(seed=5)
    for R in _rotations():
        D = wigner_d(l, R)
        assert D.shape == (2 * l + 1, 2 * l + 1) and D.dtype == np.float64
        lhs = real_spherical_harmonics(l, v @ R.T)
        rhs = real_spherical_harmonics(l, v) @ D.T
        np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-12)


def test_wigner_d_l1_is_permuted_rotation():
    perm = [1, 2, 0]  # (y, z, x)
    for R in _rotations():
        np.testing.assert_allclose(wigner_d(1, R), R[np.ix_(perm, perm)], atol=1e-13)
    np.testing.assert_array_equal(wigner_d(0, random_rotation(1)), [[1.0]])


@pytest.mark.parametrize("l", [0, 1, 2, 3, 4])
def test_wigner_d_orthogonal_and_homomorphism(l):
    rots = _rotations()
    eye = np.eye(2 * l + 1)
    for i, R1 in enumerate(rots):
        D1 = wigner_d(l, R1)
        np.testing.assert_allclose(D1 @ D1.T, eye, atol=1e-12)
        np.testing.assert_allclose(wigner_d(l, R1.T), D1.T, atol=1e-12)
        assert np.linalg.det(D1) == pytest.approx(1.0, abs=1e-12)
        R2 = rots[(i + 3) % len(rots)]
        np.testing.assert_allclose(
            wigner_d(l, R1 @ R2), D1 @ wigner_d(l, R2), rtol=0, atol=1e-12
        )
    np.testing.assert_allclose(wigner_d(l, np.eye(3)), eye, atol=1e-14)


def test_wigner_d_batched():
    Rs = np.stack([random_rotation(s) for s in range(4)]).reshape(2, 2, 3, 3)
    D = wigner_d(2, Rs)
    assert D.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(D[1, 0], wigner_d(2, Rs[1, 0]), atol=1e-14)


def test_wigner_d_agrees_with_e3nn_after_permutation():
    """D_proj(R) = D_e3nn(P R P^T) with P (x,y,z) -> (y,z,x), no sign fixes."""
    from e3nn import o3

    P = np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    R = random_rotation(11)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its generators in the default dtype
    try:
        for l in range(5):
            De = o3.Irrep(l, (-1) ** l).D_from_matrix(torch.as_tensor(P @ R @ P.T)).numpy()
            np.testing.assert_allclose(wigner_d(l, R), De, atol=1e-8)
    finally:
        torch.set_default_dtype(old)


# ---------------------------------------------------------------------------
# (4) SU(2)
# ---------------------------------------------------------------------------


def test_su2_adjoint_action():
    for R in _rotations():
        U = su2(R)
        assert U.shape == (2, 2) and U.dtype == np.complex128
        np.testing.assert_allclose(U @ U.conj().T, np.eye(2), atol=1e-13)
        assert np.linalg.det(U) == pytest.approx(1.0, abs=1e-13)
        for a in range(3):
            lhs = U @ PAULI[a] @ U.conj().T
            rhs = np.einsum("b,bij->ij", R[:, a], PAULI)
            np.testing.assert_allclose(lhs, rhs, atol=1e-12)
        # deterministic sign: Re U_00 = cos(theta/2) >= 0
        assert U[0, 0].real >= -1e-15
        np.testing.assert_array_equal(su2(R), U)


def test_su2_vector_form():
    """U (A.sigma) U^dagger = (R A).sigma for a random vector A."""
    A = np.array([0.3, -1.2, 0.7])
    R = random_rotation(7)
    U = su2(R)
    lhs = U @ np.einsum("a,aij->ij", A, PAULI) @ U.conj().T
    np.testing.assert_allclose(lhs, np.einsum("a,aij->ij", R @ A, PAULI), atol=1e-12)


def test_su2_explicit_z_rotation():
    th = 0.83
    R = Rotation.from_rotvec([0, 0, th]).as_matrix()
    np.testing.assert_allclose(
        su2(R), np.diag([np.exp(-0.5j * th), np.exp(0.5j * th)]), atol=1e-14
    )


def test_su2_homomorphism_up_to_sign():
    rots = _rotations()
    for i, R1 in enumerate(rots):
        R2 = rots[(i + 5) % len(rots)]
        prod = su2(R1) @ su2(R2)
        U12 = su2(R1 @ R2)
        err = min(np.abs(U12 - prod).max(), np.abs(U12 + prod).max())
        assert err < 1e-12


# ---------------------------------------------------------------------------
# (5) GPAW's real spherical harmonics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("l", [0, 1, 2, 3])
def test_matches_gpaw_real_spherical_harmonics(l):
    from gpaw.sphere.spherical_harmonics import Y

    u = _unit_points(seed=9)
    gpaw_vals = np.stack(
        [Y(l * l + m + l, u[:, 0], u[:, 1], u[:, 2]) for m in range(-l, l + 1)], axis=-1
    )
    # exact agreement: same order, signs and normalisation
    np.testing.assert_allclose(real_spherical_harmonics(l, u), gpaw_vals, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------
# orbital / spinor rotations and rotate_block
# ---------------------------------------------------------------------------


def test_orbital_rotation_block_structure():
    ls = [0, 1, 0, 1, 2]
    R = random_rotation(2)
    D = orbital_rotation(ls, R)
    assert D.shape == (13, 13) and D.dtype == np.float64
    np.testing.assert_allclose(D @ D.T, np.eye(13), atol=1e-12)
    start = 0
    for l in ls:
        n = 2 * l + 1
        np.testing.assert_allclose(D[start : start + n, start : start + n], wigner_d(l, R))
        D[start : start + n, start : start + n] = 0.0
        start += n
    assert np.all(D == 0.0)  # nothing off the diagonal blocks
    assert orbital_rotation([], R).shape == (0, 0)


def test_spinor_rotation_layout_and_unitarity():
    ls = [0, 1, 2]
    R1, R2 = random_rotation(3), random_rotation(4)
    S = spinor_rotation(ls, R1)
    assert S.shape == (18, 18) and S.dtype == np.complex128
    np.testing.assert_allclose(S, np.kron(su2(R1), orbital_rotation(ls, R1)))
    np.testing.assert_allclose(S @ S.conj().T, np.eye(18), atol=1e-12)
    U, D = su2(R1), orbital_rotation(ls, R1)
    np.testing.assert_allclose(S[9:, :9], U[1, 0] * D)  # [[uu, ud], [du, dd]]
    prod = S @ spinor_rotation(ls, R2)
    S12 = spinor_rotation(ls, R1 @ R2)
    assert min(np.abs(S12 - prod).max(), np.abs(S12 + prod).max()) < 1e-12


def test_rotate_block_orbital_model():
    """Block built from orbitals at positions a, b; rotating the positions == rotate_block."""
    ls_i, ls_j = [0, 1, 2], [1, 3]
    a, b = np.array([0.4, -0.2, 0.9]), np.array([-0.7, 0.5, 0.1])

    def block(a, b):
        yi = np.concatenate([real_spherical_harmonics(l, a) * (l + 1) for l in ls_i])
        yj = np.concatenate([real_spherical_harmonics(l, b) * (2 - l) for l in ls_j])
        return np.outer(yi, yj)

    R = random_rotation(5)
    H = block(a, b)
    Hrot = rotate_block(H, orbital_rotation(ls_i, R), orbital_rotation(ls_j, R))
    assert Hrot.dtype == np.float64
    np.testing.assert_allclose(Hrot, block(R @ a, R @ b), atol=1e-12)


def test_rotate_block_spinor_model():
    """Spinful block (A.sigma) x orbital block, spin-major: rotates to (RA.sigma) x rotated."""
    ls_i, ls_j = [1, 2], [0, 1]
    a, b = np.array([0.4, -0.2, 0.9]), np.array([-0.7, 0.5, 0.1])
    A = np.array([0.2, 1.1, -0.6])

    def block(A, a, b):
        yi = np.concatenate([real_spherical_harmonics(l, a) for l in ls_i])
        yj = np.concatenate([real_spherical_harmonics(l, b) for l in ls_j])
        return np.kron(np.einsum("a,aij->ij", A, PAULI), np.outer(yi, yj))

    R = random_rotation(6)
    H = block(A, a, b)
    Hrot = rotate_block(H, spinor_rotation(ls_i, R), spinor_rotation(ls_j, R))
    np.testing.assert_allclose(Hrot, block(R @ A, R @ a, R @ b), atol=1e-12)
    with pytest.raises(ValueError):
        rotate_block(H, spinor_rotation(ls_j, R), spinor_rotation(ls_j, R))


def test_random_rotation_reproducible_and_proper():
    R = random_rotation(42)
    np.testing.assert_array_equal(R, random_rotation(42))
    assert not np.allclose(R, random_rotation(43))
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-14)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-14)


# ---------------------------------------------------------------------------
# (6) invalid rotations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        -np.eye(3),  # inversion
        np.diag([1.0, 1.0, -1.0]),  # mirror
        -random_rotation(8),  # rotoinversion
        np.diag([1.0, 2.0, 1.0]),  # not orthogonal
        np.eye(2),  # wrong shape
    ],
)
def test_invalid_rotation_raises(bad):
    with pytest.raises(ValueError):
        wigner_d(2, bad)
    with pytest.raises(ValueError):
        su2(bad)
    with pytest.raises(ValueError):
        orbital_rotation([0, 1], bad)
    with pytest.raises(ValueError):
        spinor_rotation([0, 1], bad)


def test_improper_error_message():
    with pytest.raises(ValueError, match="improper"):
        wigner_d(1, np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="orthogonal"):
        wigner_d(1, 1.01 * np.eye(3))


def test_invalid_l_raises():
    with pytest.raises(ValueError):
        wigner_d(-1, np.eye(3))
    with pytest.raises(ValueError):
        real_spherical_harmonics(1.5, np.ones(3))
