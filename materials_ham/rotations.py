r"""Real spherical harmonics, Wigner-D matrices and spinor rotations.

Project conventions
-------------------
* Orbitals of a shell with angular momentum :math:`l` are ordered
  :math:`m = -l, \dots, +l` over **real** spherical harmonics in the standard
  ("Wikipedia" table) convention with :math:`z` as the polar axis and all
  Cartesian coefficients positive (no Condon-Shortley sign on the real
  functions)::

      l = 1 :  y, z, x
      l = 2 :  xy, yz, 3z^2-r^2, zx, x^2-y^2
      l = 3 :  y(3x^2-y^2), xyz, y(5z^2-r^2), z(5z^2-3r^2),
               x(5z^2-r^2), z(x^2-y^2), x(x^2-3y^2)

  This is also GPAW's convention (``gpaw.sphere.spherical_harmonics.Y`` with
  ``L = l**2 + l + m``).
* Cartesian rotation matrices :math:`R` act on column vectors,
  :math:`v' = R v`, and are *active*: rotating a function means
  :math:`f'(R v) = f(v)`.
* Spinors are ordered spin-major: the full index is ``s * n + a`` with
  ``s = 0`` (up) / ``1`` (down) and ``a`` the orbital index, so operators
  have the block layout ``[[uu, ud], [du, dd]]``.
* All public functions take and return ``float64`` / ``complex128`` numpy
  arrays; ``e3nn``/``torch`` are used internally.

Relation to e3nn
----------------
``e3nn`` (0.6) uses the same real spherical harmonics but with :math:`y` as
the polar axis and the argument order permuted.  With the permutation matrix

.. math::

    P = \begin{pmatrix} 0 & 1 & 0 \\ 0 & 0 & 1 \\ 1 & 0 & 0 \end{pmatrix},
    \qquad P\,(x, y, z)^T = (y, z, x)^T,

one has exactly (no per-:math:`m` sign changes, verified for
:math:`l \le 12` against scipy's complex harmonics)

.. math::

    Y^{\text{proj}}_l(v) = Y^{\text{e3nn}}_l(P v), \qquad
    D^{\text{proj}}_l(R) = D^{\text{e3nn}}_l(P R P^T).

``D^e3nn`` is e3nn's Wigner-D, :math:`D = e^{\alpha X_y} e^{\beta X_x}
e^{\gamma X_y}` with ``e3nn.o3.so3_generators`` (float64), evaluated with two
numerical fixes relative to ``e3nn.o3.Irrep.D_from_matrix``:

* the Euler angles are computed with ``atan2`` (``e3nn.o3.matrix_to_angles``
  uses ``acos`` and loses ~8 digits for rotations close to the e3nn polar
  axis, i.e. rotations that nearly fix :math:`\pm z` in our frame);
* the exponentials use ``scipy.linalg.expm`` (``torch.matrix_exp``, used by
  ``e3nn.o3.wigner_D``, has errors up to ~2e-10 in float64 for some small
  angles).

The result agrees with e3nn to ~1e-10 and with the exact representation to
~1e-14.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence

import numpy as np
import scipy.linalg
import torch
from e3nn import o3

__all__ = [
    "real_spherical_harmonics",
    "wigner_d",
    "su2",
    "orbital_rotation",
    "spinor_rotation",
    "rotate_block",
    "random_rotation",
    "PERMUTATION_TO_E3NN",
]

#: ``P`` with ``Y_proj(v) = Y_e3nn(P @ v)``; ``P @ (x, y, z) = (y, z, x)``.
PERMUTATION_TO_E3NN = np.array(
    [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float64
)

#: Default tolerance for checking that a matrix is a proper rotation.
ROTATION_ATOL = 1e-6

_PAULI = np.array(
    [
        [[0, 1], [1, 0]],
        [[0, -1j], [1j, 0]],
        [[1, 0], [0, -1]],
    ],
    dtype=np.complex128,
)


@contextlib.contextmanager
def _float64_default() -> Iterator[None]:
    """Temporarily make float64 torch's default dtype.

    ``e3nn.o3.wigner_D`` builds its so(3) generators in the default dtype;
    without this they would be float32 and the result accurate to ~1e-7 only.
    """
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@functools.lru_cache(maxsize=None)
def _so3_generators_cached(l: int) -> np.ndarray:
    with _float64_default():
        X = o3.so3_generators(l).numpy().astype(np.float64)
    X.setflags(write=False)
    return X


def _so3_generators(l: int) -> np.ndarray:
    """e3nn's real so(3) generators (X_x, X_y, X_z) for degree l, float64, (3, 2l+1, 2l+1)."""
    return _so3_generators_cached(int(l))


def _expm(A: np.ndarray) -> np.ndarray:
    """Matrix exponential of (a batch of) matrices, accurate to ~1e-15.

    ``torch.matrix_exp`` (used by ``e3nn.o3.wigner_D``) is only accurate to
    ~1e-10 in float64 for some small arguments, hence scipy here.
    """
    if A.ndim == 2:
        return scipy.linalg.expm(A)
    batch = A.shape[:-2]
    flat = A.reshape(-1, *A.shape[-2:])
    return np.stack([scipy.linalg.expm(a) for a in flat]).reshape(*batch, *A.shape[-2:])


def _check_l(l: int) -> int:
    if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or l < 0:
        raise ValueError(f"angular momentum l must be a non-negative integer, got {l!r}")
    return int(l)


def _as_rotation(rotation, atol: float = ROTATION_ATOL) -> np.ndarray:
    """Validate ``rotation`` as a (batch of) proper rotation(s), shape (..., 3, 3)."""
    R = np.asarray(rotation, dtype=np.float64)
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3), got {R.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError("rotation contains non-finite entries")
    gram = np.swapaxes(R, -1, -2) @ R
    dev = np.abs(gram - np.eye(3)).max(initial=0.0)
    if dev > atol:
        raise ValueError(
            f"rotation matrix is not orthogonal: max |R^T R - 1| = {dev:.3e} > {atol:.1e}"
        )
    det = np.linalg.det(R)
    if np.any(det < 0):
        raise ValueError(
            "rotation matrix is improper (det = -1); only proper rotations "
            "(det = +1) are supported -- handle inversion/parity separately"
        )
    return R


def real_spherical_harmonics(l: int, vectors) -> np.ndarray:
    r"""Real spherical harmonics :math:`Y_{lm}(\hat v)` in the project convention.

    Parameters
    ----------
    l : int
        Angular momentum, ``0 <= l <= 12`` (e3nn's limit).
    vectors : array_like, shape ``(..., 3)``
        Cartesian vectors ``(x, y, z)``; they need not be normalised (only the
        direction is used).  A zero vector gives ``0`` for ``l > 0``.

    Returns
    -------
    numpy.ndarray, float64, shape ``(..., 2l+1)``
        Index ``l + m`` holds :math:`Y_{lm}`, ``m = -l..l``, ordered as in the
        module docstring (``l=1``: ``y, z, x``), orthonormal on the unit
        sphere: :math:`\int Y_{lm} Y_{lm'} d\Omega = \delta_{mm'}`.
    """
    l = _check_l(l)
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim < 1 or v.shape[-1] != 3:
        raise ValueError(f"vectors must have shape (..., 3), got {v.shape}")
    vp = v @ PERMUTATION_TO_E3NN.T  # (x, y, z) -> (y, z, x)
    with _float64_default():
        y = o3.spherical_harmonics(
            l, torch.from_numpy(np.ascontiguousarray(vp)), normalize=True,
            normalization="integral",
        )
    return y.numpy().astype(np.float64, copy=False)


def _e3nn_angles(Rp: np.ndarray):
    """Euler angles (alpha, beta, gamma) with Rp = Ry(alpha) Rx(beta) Ry(gamma).

    Same convention as ``e3nn.o3.matrix_to_angles`` but using ``atan2`` for
    beta, which is accurate near beta = 0, pi.  Rp has shape (..., 3, 3).
    """
    u = Rp[..., :, 1]  # Rp @ e_y = (sin a sin b, cos b, cos a sin b)
    alpha = np.arctan2(u[..., 0], u[..., 2])
    beta = np.arctan2(np.hypot(u[..., 0], u[..., 2]), u[..., 1])
    with _float64_default():
        R0 = o3.angles_to_matrix(
            torch.as_tensor(alpha), torch.as_tensor(beta), torch.zeros_like(torch.as_tensor(alpha))
        ).numpy()
    Ry_gamma = np.swapaxes(R0, -1, -2) @ Rp
    gamma = np.arctan2(Ry_gamma[..., 0, 2], Ry_gamma[..., 0, 0])
    return alpha, beta, gamma


def wigner_d(l: int, rotation) -> np.ndarray:
    r"""Real Wigner-D matrix of a proper rotation in the project convention.

    Satisfies, for every vector ``v`` and proper rotation ``R``,

    .. math:: Y_l(R v) = D_l(R)\, Y_l(v),

    with :math:`Y_l` = :func:`real_spherical_harmonics`; hence
    :math:`D_l(R_1 R_2) = D_l(R_1) D_l(R_2)` and :math:`D_l(R)` is orthogonal.
    A function :math:`f = \sum_m c_m Y_{lm}` rotated actively,
    :math:`f'(v) = f(R^{-1} v)`, has coefficients :math:`c' = D_l(R) c`.

    Parameters
    ----------
    l : int
        Angular momentum, ``l >= 0``.
    rotation : array_like, shape ``(3, 3)`` or ``(..., 3, 3)``
        Proper rotation(s) acting on column vectors.

    Returns
    -------
    numpy.ndarray, float64, shape ``(2l+1, 2l+1)`` (or ``(..., 2l+1, 2l+1)``)

    Raises
    ------
    ValueError
        If ``rotation`` is not orthogonal (to ``1e-6``) or has det ``-1``.
    """
    l = _check_l(l)
    R = _as_rotation(rotation)
    P = PERMUTATION_TO_E3NN
    Rp = P @ R @ P.T
    alpha, beta, gamma = _e3nn_angles(Rp)
    X = _so3_generators(l)
    D = (
        _expm(alpha[..., None, None] * X[1])
        @ _expm(beta[..., None, None] * X[0])
        @ _expm(gamma[..., None, None] * X[1])
    )
    return np.ascontiguousarray(D, dtype=np.float64)


def su2(rotation) -> np.ndarray:
    r"""Spin-1/2 representation :math:`U(R) \in SU(2)` of a proper rotation.

    Defined by :math:`U \sigma_a U^\dagger = \sum_b R_{ba} \sigma_b`, i.e.
    :math:`U (\mathbf A\cdot\boldsymbol\sigma) U^\dagger = (R\mathbf A)\cdot
    \boldsymbol\sigma`.  For a rotation by angle :math:`\theta` about unit
    axis :math:`\hat n`, :math:`U = \exp(-i\theta\,\hat n\cdot\boldsymbol
    \sigma/2) = \cos(\theta/2) - i \sin(\theta/2)\,\hat n\cdot\boldsymbol
    \sigma`.  The global sign (:math:`U` and :math:`-U` give the same
    :math:`R`) is fixed by taking :math:`\theta \in [0, \pi]`, i.e.
    :math:`\mathrm{Re}\,U_{00} = \cos(\theta/2) \ge 0` (scipy's canonical
    quaternion); it is therefore discontinuous at :math:`\theta = \pi` and
    :math:`U(R_1R_2) = \pm U(R_1)U(R_2)`.

    Basis order is (up, down) along :math:`z`; Pauli matrices are the
    standard ones.

    Parameters
    ----------
    rotation : array_like, shape ``(3, 3)`` or ``(..., 3, 3)``

    Returns
    -------
    numpy.ndarray, complex128, shape ``(2, 2)`` (or ``(..., 2, 2)``)
        Unitary with determinant 1.
    """
    from scipy.spatial.transform import Rotation

    R = _as_rotation(rotation)
    batch = R.shape[:-2]
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat(canonical=True)  # (x, y, z, w)
    q = q.reshape(*batch, 4)
    w = q[..., 3]
    U = w[..., None, None] * np.eye(2, dtype=np.complex128) - 1j * np.einsum(
        "...a,aij->...ij", q[..., :3], _PAULI
    )
    return U


def orbital_rotation(shell_ls: Sequence[int], rotation) -> np.ndarray:
    r"""Block-diagonal real rotation of an atom's orbital basis.

    Parameters
    ----------
    shell_ls : sequence of int
        Angular momentum of each shell, in basis order, e.g.
        ``[0, 1, 0, 1, 2]`` (s, p, s, p, d: ``n = 13``).
    rotation : array_like, shape ``(3, 3)``
        Proper rotation.

    Returns
    -------
    numpy.ndarray, float64, shape ``(n, n)``, ``n = sum(2l+1)``
        ``block_diag(wigner_d(l_1, R), wigner_d(l_2, R), ...)``; orthogonal.
    """
    R = _as_rotation(rotation)
    if R.shape != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3), got {R.shape}")
    ls = [_check_l(l) for l in shell_ls]
    if not ls:
        return np.zeros((0, 0), dtype=np.float64)
    cache = {l: wigner_d(l, R) for l in set(ls)}
    return scipy.linalg.block_diag(*(cache[l] for l in ls)).astype(np.float64, copy=False)


def spinor_rotation(shell_ls: Sequence[int], rotation) -> np.ndarray:
    r"""Rotation of an atom's spinor-orbital basis (spin-major layout).

    Returns ``np.kron(su2(R), orbital_rotation(shell_ls, R))``, i.e. index
    ``s * n + a`` with spin ``s`` outer, block layout ``[[uu, ud], [du, dd]]``.

    Parameters
    ----------
    shell_ls : sequence of int
        Angular momentum of each shell (see :func:`orbital_rotation`).
    rotation : array_like, shape ``(3, 3)``
        Proper rotation.

    Returns
    -------
    numpy.ndarray, complex128, shape ``(2n, 2n)``
        Unitary.  Defined up to the global sign of :func:`su2`.
    """
    D = orbital_rotation(shell_ls, rotation)
    return np.kron(su2(rotation), D).astype(np.complex128, copy=False)


def rotate_block(block, rot_i, rot_j) -> np.ndarray:
    r"""Transform a Hamiltonian/overlap block: ``rot_i @ block @ rot_j^dagger``.

    For a crystal rigidly rotated by :math:`R` (atoms :math:`r \to R r`,
    Hamiltonian :math:`H \to \hat U_R H \hat U_R^\dagger`), the block between
    atom :math:`i` and atom :math:`j` in the image cell with lattice vector
    :math:`\mathbf T` transforms to the block between the rotated atoms at
    :math:`R\mathbf T`:

    .. math:: H'_{ij}(R\mathbf T) = D_i\, H_{ij}(\mathbf T)\, D_j^\dagger,

    with :math:`D_i` = :func:`orbital_rotation` (spinless) or
    :func:`spinor_rotation` (spinful, spin-major) for atom :math:`i`'s shells.

    Parameters
    ----------
    block : array_like, shape ``(..., n_i, n_j)``
    rot_i : array_like, shape ``(n_i, n_i)``
    rot_j : array_like, shape ``(n_j, n_j)``

    Returns
    -------
    numpy.ndarray, shape ``(..., n_i, n_j)``
        float64 if all inputs are real, else complex128.
    """
    B = np.asarray(block)
    Di = np.asarray(rot_i)
    Dj = np.asarray(rot_j)
    if B.ndim < 2:
        raise ValueError(f"block must have shape (..., n_i, n_j), got {B.shape}")
    n_i, n_j = B.shape[-2:]
    if Di.shape != (n_i, n_i) or Dj.shape != (n_j, n_j):
        raise ValueError(
            f"rotation shapes {Di.shape}, {Dj.shape} do not match block shape {B.shape}"
        )
    dtype = np.result_type(B, Di, Dj, np.float64)
    return (Di @ B @ Dj.conj().T).astype(dtype, copy=False)


def random_rotation(seed=None) -> np.ndarray:
    """Haar-random proper rotation, reproducible for a given ``seed``.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        Passed to :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.ndarray, float64, shape ``(3, 3)``
        Orthogonal with determinant +1.
    """
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)  # uniform on S^3 -> Haar on SO(3)
    q /= np.linalg.norm(q)
    return Rotation.from_quat(q).as_matrix().astype(np.float64)


# ------------------------------------------------------------------ whole samples (engine checks)
def rotate_sample(sample, rotation):
    """The sample of the rigidly rotated crystal, predicted by rotating every block.

    Positions and cell rows go to R r; lattice shifts and reduced k-points are unchanged;
    H_ij(R) -> D_i H_ij(R) D_j^dagger with D = spinor_rotation (SU(2) x Wigner-D) and
    S_ij(R) -> D_i S_ij(R) D_j^T with D = orbital_rotation.  Eigenvalues are invariant.
    """
    R = _as_rotation(rotation)
    out = sample.copy()
    out.crystal = sample.crystal.rotated(R)
    dorb = {z: orbital_rotation(b.ls, R) for z, b in sample.basis.items()}
    dspin = {z: spinor_rotation(b.ls, R) for z, b in sample.basis.items()}
    numbers = sample.crystal.numbers
    for e, (i, j) in enumerate(sample.edge_index):
        zi, zj = int(numbers[i]), int(numbers[j])
        out.block("S", e)[...] = rotate_block(sample.block("S", e), dorb[zi], dorb[zj])
        for name in ("H", "H0"):
            out.block(name, e)[...] = rotate_block(sample.block(name, e), dspin[zi], dspin[zj])
    return out


def equivariance_check(engine, crystal, rotation=None, *, seed: int = 0, reference=None) -> dict:
    """Rotate a crystal, recompute it with the engine and compare with the rotated blocks.

    This proves the engine's orbital order/sign table and spinor convention: any error
    there shows up as a block mismatch of order of the matrix elements themselves.
    Returns max |recomputed - rotated| (eV) per matrix and overall, the rotation used,
    and the number of edges compared.  ``reference`` may pass an existing sample of
    ``crystal`` computed by the same engine (saves one run).
    """
    R = random_rotation(seed) if rotation is None else _as_rotation(rotation)
    ref = reference if reference is not None else engine.compute(crystal)
    new = engine.compute(ref.crystal.rotated(R))
    predicted = rotate_sample(ref, R)
    keys_new = {(int(i), int(j), tuple(r)): e for e, ((i, j), r) in enumerate(zip(new.edge_index,
                                                                               new.edge_shift.tolist()))}
    dev = {"H": 0.0, "H0": 0.0, "S": 0.0}
    missing = 0
    for e, ((i, j), r) in enumerate(zip(predicted.edge_index, predicted.edge_shift.tolist())):
        f = keys_new.get((int(i), int(j), tuple(r)))
        if f is None:
            missing += 1
            continue
        for name in dev:
            dev[name] = max(dev[name], float(np.abs(new.block(name, f) - predicted.block(name, e)).max()))
    return {"max_abs_diff_ev": max(dev.values()), "per_matrix_ev": dev, "rotation": R.tolist(),
            "n_edges": predicted.n_edges, "missing_edges": missing + abs(new.n_edges - predicted.n_edges)}
