"""Rotate-and-recompute: proves the GPAW orbital order/sign table and the spinor layout.

A low-symmetry cell (sheared cell, displaced atom, no point symmetry) is computed, rigidly
rotated, computed again, and compared with the original blocks rotated by Wigner-D
(orbitals) and SU(2) (spin).

What limits the agreement (measured, GaAs, 772 edges):

* rotations of the octahedral group (C3 about [111], C4 about z and products) agree to
  ~1e-13 eV for H, H0 and S;
* a generic rotation agrees to ~1e-13 eV for S and H0 (spherical initial density) but
  only to ~1e-4 eV for the converged H: GPAW integrates the PAW XC correction of the
  non-spherical converged density on a fixed 50-point Lebedev angular grid, which is
  invariant under the octahedral group only.  This is the engine's own rotational
  error, not a convention error (a wrong sign or order gives errors of ~0.1-1 eV).
"""
import numpy as np
import pytest

from materials_ham.rotations import equivariance_check, random_rotation, rotate_sample

C3_111 = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])
C4_Z = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])


@pytest.fixture(scope="module")
def lowsym_reference(engine, low_symmetry_crystal):
    return engine.compute(low_symmetry_crystal)


def test_octahedral_rotation_agrees_to_1e4_ev(engine, low_symmetry_crystal, lowsym_reference):
    r = equivariance_check(engine, low_symmetry_crystal, C3_111 @ C4_Z, reference=lowsym_reference)
    assert r["missing_edges"] == 0
    assert r["max_abs_diff_ev"] <= 1e-4, r["per_matrix_ev"]
    assert r["max_abs_diff_ev"] <= 1e-9, r["per_matrix_ev"]  # in practice ~1e-13


def test_generic_rotation(engine, low_symmetry_crystal, lowsym_reference):
    r = equivariance_check(engine, low_symmetry_crystal, random_rotation(7), reference=lowsym_reference)
    dev = r["per_matrix_ev"]
    assert r["missing_edges"] == 0
    assert dev["S"] <= 1e-10 and dev["H0"] <= 1e-10, dev
    # converged H: limited by GPAW's Lebedev quadrature of the PAW XC correction (see module doc)
    assert dev["H"] <= 3e-4, dev


def test_check_detects_a_wrong_convention(si_sample):
    """Rotating with the wrong matrix (R^T instead of R) must give a large mismatch."""
    R = random_rotation(3)
    a = rotate_sample(si_sample, R)
    b = rotate_sample(si_sample, R.T)
    assert np.abs(a.H - b.H).max() > 0.05
    # eigenvalues are invariant under the correct rotation
    from materials_ham.kspace import band_energies
    np.testing.assert_allclose(band_energies(a, a.ref_kpts), si_sample.ref_eigenvalues, atol=1e-8)
