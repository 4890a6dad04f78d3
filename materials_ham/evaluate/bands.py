"""Band-structure side of the scorer: k-grids and k-paths, Bloch maps, the reference cache.

Eigenvalues (eV) of a spinor H with the reference overlap S solve H(k) c = e (S(k) x I2) c.
With the Cholesky factor S(k) = L L^H, e = eigvalsh(L2^-1 H(k) L2^-H) where
L2 = I2 x L (the spin-major global layout of :mod:`materials_ham.kspace`).  Everything that
depends only on the reference -- the k-points, L^-1 per k-point, the reference eigenvalues,
the window masks and the SOC multiplets -- is computed once per structure
(:func:`reference_bands`) and cached in memory and, optionally, on disk
(:class:`BandCache`: one ``.npz`` per structure, keyed by the dataset fingerprint and the
settings, written atomically).  Scoring a prediction then costs one Bloch sum of the
predicted H (:class:`BlochMap`: a fold and one FFT for the grid, one matrix product for the
path), two batched matrix products and one batched ``numpy.linalg.eigvalsh`` over the k-points.

k-points (reduced coordinates of the structure's own reciprocal lattice):
* ``grid``: a Gamma-centred Monkhorst-Pack grid (default 4x4x4), the full grid (no symmetry
  reduction: a prediction need not have the crystal's symmetry);
* ``path``: the high-symmetry path of seekpath (HPKOT convention, time reversal assumed),
  mapped from seekpath's standardised primitive cell to the structure's cell, with about
  ``path_points`` points spread by length (every labelled point included).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..kspace import cholesky_overlap, monkhorst_pack

#: Bump when the content or meaning of cached reference data changes.
CACHE_VERSION = 1


@dataclass(frozen=True)
class BandSettings:
    """Settings of the band metrics (part of the cache key).

    ``kgrid``: Monkhorst-Pack grid (Gamma-centred); ``path_points``: approximate number of
    k-points on the high-symmetry path; ``windows_ev``: half-widths w (eV) of the windows
    [E_F - w, E_F + w] around the reference Fermi level; ``ghost_margin_ev``: a predicted state
    in a window has a reference counterpart if one lies in the window widened by this margin
    (so a band merely shifted across the window edge is not a ghost); ``below_tolerance_ev``: a predicted
    eigenvalue more than this below the lowest reference eigenvalue at its k-point counts as a
    state below the reference spectrum; ``degeneracy_tolerance_ev``: levels closer than this
    form one multiplet (SOC splitting metric).
    """

    kgrid: tuple[int, int, int] = (4, 4, 4)
    path_points: int = 40
    windows_ev: tuple[float, ...] = (1.0, 3.0)
    ghost_margin_ev: float = 0.5
    below_tolerance_ev: float = 1.0
    degeneracy_tolerance_ev: float = 1e-3

    def __post_init__(self):
        from ..errors import MaterialsHamError

        kg = tuple(int(x) for x in self.kgrid)
        if len(kg) != 3 or min(kg) < 1:
            raise MaterialsHamError(f"k-grid must be three positive integers, got {self.kgrid!r}")
        if int(self.path_points) < 0:
            raise MaterialsHamError(f"path_points must be >= 0, got {self.path_points!r}")
        object.__setattr__(self, "kgrid", kg)
        object.__setattr__(self, "windows_ev", tuple(float(w) for w in self.windows_ev))

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        text = json.dumps({"cache_version": CACHE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def window_names(self) -> tuple[str, ...]:
        return tuple(f"w{w:g}" for w in self.windows_ev) + ("occupied",)


# ---------------------------------------------------------------------------------- k-path
@dataclass
class KPath:
    """A high-symmetry path: ``kpts`` (P, 3) reduced in the structure's cell, ``x`` (P,) cumulative
    length (1/Angstrom, 2 pi omitted), ``labels`` [(index, label)] of the labelled points,
    ``breaks`` indices where a new, disconnected segment starts."""

    kpts: np.ndarray
    x: np.ndarray
    labels: list[tuple[int, str]] = field(default_factory=list)
    breaks: list[int] = field(default_factory=list)


def high_symmetry_path(crystal, n_points: int = 40) -> KPath:
    """The seekpath (HPKOT) path of ``crystal`` in its own reduced reciprocal coordinates
    (an empty path, with a warning, if seekpath finds none).

    seekpath standardises the cell (primitive cell P, rotation Rot with P Rot = M cell, M
    integer); a point k_std (reduced in P's reciprocal lattice) is k_cart = k_std inv(P)^T,
    rotated back k_cart Rot, and reduced in our cell k = k_cart Rot cell^T.  For a supercell
    the points fold, which keeps them valid k-points.
    """
    import seekpath

    if n_points <= 0:
        return KPath(np.zeros((0, 3)), np.zeros(0))
    cell = np.asarray(crystal.cell, float)
    frac = np.asarray(crystal.positions, float) @ np.linalg.inv(cell)
    try:
        with warnings.catch_warnings():  # spglib's DeprecationWarning about its error handling, raised via seekpath
            warnings.simplefilter("ignore", DeprecationWarning)
            res = seekpath.get_path((cell, frac, [int(z) for z in crystal.numbers]), with_time_reversal=True)
    except Exception as err:  # noqa: BLE001 - spglib/seekpath raise several types
        warnings.warn(f"seekpath found no k-path for {crystal.formula} ({type(err).__name__}: {err}); "
                      "its path metrics are left out", stacklevel=2)
        return KPath(np.zeros((0, 3)), np.zeros(0))
    prim = np.asarray(res["primitive_lattice"], float)
    rot = np.asarray(res["rotation_matrix"], float)
    to_ours = np.linalg.inv(prim).T @ rot @ cell.T            # k_std (row) -> k reduced in our cell
    to_cart = np.linalg.inv(prim).T                           # k_std -> Cartesian (1/A), std frame
    coords = {k: np.asarray(v, float) for k, v in res["point_coords"].items()}
    segments = res["path"]
    lengths = np.array([np.linalg.norm((coords[b] - coords[a]) @ to_cart) for a, b in segments])
    total = lengths.sum()
    kpts, xs, labels, breaks = [], [], [], []
    x0 = 0.0
    for s, ((a, b), seg_len) in enumerate(zip(segments, lengths)):
        n = max(2, int(round(n_points * seg_len / total)) + 1) if total > 0 else 2
        t = np.linspace(0.0, 1.0, n)
        pts = coords[a][None] + t[:, None] * (coords[b] - coords[a])[None]
        continues = s > 0 and segments[s - 1][1] == a
        if continues:                                         # shared end point: do not repeat it
            pts, t = pts[1:], t[1:]
        elif s > 0:
            breaks.append(len(kpts))
        if not continues:
            labels.append((len(kpts), _label(a)))
        kpts.extend(pts @ to_ours)
        xs.extend(x0 + t * seg_len)
        labels.append((len(kpts) - 1, _label(b)))
        x0 += seg_len
    return KPath(np.array(kpts), np.array(xs), labels, breaks)


def _label(name: str) -> str:
    return "Γ" if name.upper() == "GAMMA" else name.replace("_", "")


# ------------------------------------------------------------------------------ Bloch sums
class BlochMap:
    """X(k) = sum_R exp(+2 pi i k.R) X(R) of one structure on fixed k-points, for any flat values.

    ``sample`` fixes the layout (edges, block shapes; ``spinor``: blocks (2 n_i, 2 n_j) spin-major
    as H, else (n_i, n_j) as S); ``kpts`` (K, 3) reduced.  The edges are grouped by atom pair
    (i, j); the blocks of one pair are contiguous in the flat array (edges are sorted by
    (i, j, R)), so each pair is a (n_edges_of_pair, block size) matrix view.  Two routes:

    * ``grid=(n1, n2, n3)``: the first M = n1 n2 n3 k-points must be the Gamma-centred grid in
      :func:`~materials_ham.kspace.monkhorst_pack` order; exp(2 pi i k.R) then depends on R
      modulo the grid only, so each pair's blocks are summed by class and one FFT gives all M
      points: cost ~ entries + M N^2 log M;
    * the other ("free") k-points, e.g. a path: one BLAS product (K_free, n_pair) x (n_pair, block)
      per atom pair, i.e. K_free x entries multiply-adds with no zero padding.

    Returns complex128 (K, N, N), N = 2 nao (spinor) or nao, in the global spin-major layout.
    """

    def __init__(self, sample, kpts: np.ndarray, *, spinor: bool = True, grid=None):
        kpts = np.asarray(kpts, float).reshape(-1, 3)
        self.spinor = bool(spinor)
        f = 2 if spinor else 1
        n, off = sample.orbitals_per_atom, sample.orbital_offsets
        self.nao = sample.nao
        self.N, self.K = f * self.nao, len(kpts)
        self.grid = tuple(int(x) for x in grid) if grid is not None else None
        self.M = int(np.prod(self.grid)) if self.grid else 0
        if self.M and (self.M > self.K or not np.allclose(kpts[:self.M], monkhorst_pack(self.grid), atol=1e-12)):
            raise ValueError(f"the first k-points are not the Gamma-centred {self.grid} grid")
        ei, R = sample.edge_index, sample.edge_shift
        self.phase = np.exp(2j * np.pi * kpts[self.M:] @ R.T.astype(float))        # (K_free, E)
        starts = (f * f) * sample.block_offsets
        key = ei[:, 0] * sample.n_atoms + ei[:, 1]
        order = np.argsort(key, kind="stable")
        cut = np.nonzero(np.diff(key[order]))[0] + 1
        self.groups = []
        for edges in np.split(order, cut) if len(order) else []:
            i, j = int(ei[edges[0], 0]), int(ei[edges[0], 1])
            bs = int(f * f * n[i] * n[j])
            contiguous = bool(np.all(np.diff(edges) == 1))
            g = {"i": i, "j": j, "ni": int(n[i]), "nj": int(n[j]), "oi": int(off[i]), "oj": int(off[j]), "bs": bs,
                 "edges": slice(int(edges[0]), int(edges[-1]) + 1) if contiguous else edges,
                 "start": int(starts[edges[0]]), "gather": None if contiguous else starts[edges]}
            if self.M:
                nn = np.array(self.grid)
                c = np.mod(R[edges], nn)
                cls = (c[:, 0] * nn[1] + c[:, 1]) * nn[2] + c[:, 2]
                perm = np.argsort(cls, kind="stable")
                uniq, first = np.unique(cls[perm], return_index=True)
                g["classes"] = uniq
                g["reduce"] = None if len(uniq) == len(cls) else (perm, first)
                if g["reduce"] is None:
                    g["classes"] = cls
            self.groups.append(g)

    def nbytes(self) -> int:
        return int(self.phase.nbytes)

    # -------------------------------------------------------------------------- internals
    def _blocks(self, values: np.ndarray, g: dict) -> np.ndarray:
        """(edges of the pair, block size) matrix of the pair's blocks (a view when contiguous)."""
        if g["gather"] is None:
            m = g["edges"].stop - g["edges"].start
            return values[g["start"]:g["start"] + m * g["bs"]].reshape(m, g["bs"])
        return values[g["gather"][:, None] + np.arange(g["bs"])[None, :]]

    def _place(self, out: np.ndarray, g: dict, res: np.ndarray) -> None:
        K, nao = len(out), self.nao
        ni, nj, oi, oj = g["ni"], g["nj"], g["oi"], g["oj"]
        if self.spinor:
            out.reshape(K, 2, nao, 2, nao)[:, :, oi:oi + ni, :, oj:oj + nj] = res.reshape(K, 2, ni, 2, nj)
        else:
            out[:, oi:oi + ni, oj:oj + nj] = res.reshape(K, ni, nj)

    def _grid(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros((self.M, self.N, self.N), np.complex128)
        for g in self.groups:
            V = self._blocks(values, g)
            if g["reduce"] is not None:
                perm, first = g["reduce"]
                V = np.add.reduceat(V[perm], first, axis=0)
            F = np.zeros((self.M, g["bs"]), np.complex128)
            F[g["classes"]] = V
            F = np.fft.ifftn(F.reshape(*self.grid, g["bs"]), axes=(0, 1, 2))
            F *= self.M
            self._place(out, g, F.reshape(self.M, g["bs"]))
        return out

    def _free(self, values: np.ndarray, free_k) -> np.ndarray:
        phase = self.phase[free_k]
        out = np.zeros((len(phase), self.N, self.N), np.complex128)
        for g in self.groups:
            V = self._blocks(values, g)
            P = phase[:, g["edges"]]
            if np.iscomplexobj(V):
                res = P @ V
            else:
                res = np.empty((len(P), g["bs"]), np.complex128)
                res.real = np.ascontiguousarray(P.real) @ V
                res.imag = np.ascontiguousarray(P.imag) @ V
            self._place(out, g, res)
        return out

    # ------------------------------------------------------------------------------- API
    def __call__(self, values: np.ndarray, ks=slice(None)) -> np.ndarray:
        """X(k) (len(ks), N, N) of the flat ``values`` at the k-points ``ks`` (slice or index array)."""
        values = np.asarray(values)
        idx = np.arange(self.K)[ks]
        out = np.empty((len(idx), self.N, self.N), np.complex128)
        g = idx < self.M
        if g.any():
            out[g] = self._grid(values)[idx[g]]
        if (~g).any():
            out[~g] = self._free(values, idx[~g] - self.M)
        return out

    def batches(self, values: np.ndarray, max_bytes: int = 1 << 28):
        """Yield (k slice, X(k)) over all k-points in batches of about ``max_bytes`` (the grid's FFT
        produces all M grid points at once)."""
        values = np.asarray(values)
        step = max(1, int(max_bytes) // (16 * self.N * self.N))
        if self.M:
            G = self._grid(values)
            for a in range(0, self.M, step):
                yield slice(a, min(self.M, a + step)), G[a:a + step]
            del G
        for a in range(self.M, self.K, step):
            b = min(self.K, a + step)
            yield slice(a, b), self._free(values, slice(a - self.M, b - self.M))


def eigenvalues(Hk: np.ndarray, Linv: np.ndarray) -> np.ndarray:
    """(K, 2n) ascending eigenvalues of H(k) c = e (S(k) x I2) c.

    ``Hk`` (K, 2n, 2n) spin-major spinor H(k); ``Linv`` (K, n, n) inverse Cholesky factors of S(k).
    A = (I2 x L^-1) H (I2 x L^-H) is formed as two batched products on reshaped views (no
    copies, half the work of multiplying by the block-diagonal 2n x 2n factor).
    """
    K, n = Linv.shape[0], Linv.shape[-1]
    N = 2 * n
    T = (Linv[:, None] @ Hk.reshape(K, 2, n, N)).reshape(K, N, N)           # (I2 x L^-1) H
    A = (T.reshape(K, 2 * N, n) @ np.conj(np.swapaxes(Linv, -1, -2))).reshape(K, N, N)
    return np.linalg.eigvalsh(A)


def batched_eigenvalues(bloch: BlochMap, values: np.ndarray, Linv: np.ndarray,
                        max_bytes: int = 1 << 28) -> np.ndarray:
    """(K, N) eigenvalues of the flat spinor ``values`` at the map's k-points, in k-batches whose
    (K_batch, N, N) work arrays stay below about ``max_bytes``."""
    out = np.empty((bloch.K, bloch.N))
    for ks, Hk in bloch.batches(values, max_bytes // 3):
        out[ks] = eigenvalues(Hk, Linv[ks])
    return out


# ------------------------------------------------------------------------ reference bands
@dataclass
class BandReference:
    """Reference-side band data of one structure (all energies in eV).

    ``kpts`` (K, 3) = grid (first ``n_grid``) then path; ``Linv`` (K, nao, nao) inverse
    Cholesky factors of S(k); ``eig`` (K, 2 nao) reference eigenvalues; ``fermi_level``;
    ``n_occ`` occupied bands (SOC: one electron per band; -1 when n_electrons is not an
    integer); ``multiplets`` (P, 3) int rows (k index, first band, last band) of the SOC
    multiplets at labelled path points (each label once); ``path_x``/``path_labels``/``path_breaks`` for plots.
    """

    kpts: np.ndarray
    n_grid: int
    Linv: np.ndarray
    eig: np.ndarray
    fermi_level: float
    n_occ: int
    multiplets: np.ndarray
    path_x: np.ndarray
    path_labels: list
    path_breaks: list

    def masks(self, settings: BandSettings) -> dict[str, np.ndarray]:
        """Window masks (K, M) of the reference eigenvalues, by window name."""
        out = {name: (self.eig >= self.fermi_level - w) & (self.eig <= self.fermi_level + w)
               for name, w in zip(settings.window_names, settings.windows_ev)}
        occ = np.zeros(self.eig.shape, bool)
        if self.n_occ > 0:
            occ[:, :self.n_occ] = True
        out["occupied"] = occ
        return out

    def gap(self, eig: np.ndarray | None = None) -> float | None:
        """CBM - VBM over all k-points (eV), clipped at 0 (metals: 0); None if n_occ is undefined."""
        e = self.eig if eig is None else eig
        if self.n_occ <= 0 or self.n_occ >= e.shape[1]:
            return None
        return float(max(0.0, e[:, self.n_occ].min() - e[:, self.n_occ - 1].max()))

    def nbytes(self) -> int:
        return int(self.Linv.nbytes + self.eig.nbytes + self.kpts.nbytes)

    # ------------------------------------------------------------------------- npz cache
    def save(self, path: Path) -> None:
        meta = {"n_grid": self.n_grid, "fermi_level": self.fermi_level, "n_occ": self.n_occ,
                "path_labels": [[int(i), str(s)] for i, s in self.path_labels],
                "path_breaks": [int(b) for b in self.path_breaks], "cache_version": CACHE_VERSION}
        with atomic_write(path) as fh:
            np.savez(fh, kpts=self.kpts, Linv=self.Linv, eig=self.eig, multiplets=self.multiplets,
                     path_x=self.path_x, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))

    @classmethod
    def load(cls, path: Path) -> "BandReference":
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        meta = json.loads(a["meta"].tobytes().decode())
        if meta.get("cache_version") != CACHE_VERSION:
            raise ValueError("stale cache version")
        return cls(kpts=a["kpts"], n_grid=int(meta["n_grid"]), Linv=a["Linv"], eig=a["eig"],
                   fermi_level=float(meta["fermi_level"]), n_occ=int(meta["n_occ"]), multiplets=a["multiplets"],
                   path_x=a["path_x"], path_labels=[(int(i), s) for i, s in meta["path_labels"]],
                   path_breaks=list(meta["path_breaks"]))


def occupied_bands(n_electrons: float) -> int:
    """Occupied SOC bands (one electron per band); -1 if n_electrons is not an integer."""
    n = int(round(n_electrons))
    return n if abs(n_electrons - n) < 1e-6 else -1


def band_kpoints(crystal, settings: BandSettings) -> tuple[np.ndarray, int, KPath]:
    grid = monkhorst_pack(settings.kgrid)
    path = high_symmetry_path(crystal, settings.path_points)
    return np.vstack([grid, path.kpts]) if len(path.kpts) else grid, len(grid), path


def reference_bands(sample, bloch_h: BlochMap, bloch_s: BlochMap, kpts: np.ndarray, n_grid: int, path: KPath,
                    settings: BandSettings) -> BandReference:
    """Compute the reference band data of ``sample`` (see :class:`BandReference`)."""
    Linv = np.empty((len(kpts), sample.nao, sample.nao), np.complex128)
    for ks, Sk in bloch_s.batches(sample.S):
        Linv[ks] = np.linalg.inv(cholesky_overlap(Sk))
    eig = batched_eigenvalues(bloch_h, sample.H, Linv)
    n_occ = occupied_bands(sample.n_electrons)
    nao = sample.nao
    multiplets = []
    if n_occ > 0 and n_occ % 2 == 0 and path.labels:
        first = {}
        for i, lab in path.labels:                            # each labelled point once (Gamma recurs)
            first.setdefault(lab, n_grid + i)
        idx = np.array(sorted(first.values()))
        Hk = bloch_h(sample.H, idx)
        A0 = 0.5 * (Hk[:, :nao, :nao] + Hk[:, nao:, nao:])
        Li = Linv[idx]
        e0 = np.linalg.eigvalsh(Li @ A0 @ np.conj(np.swapaxes(Li, -1, -2)))
        top = n_occ // 2 - 1
        for q, k in enumerate(idx):
            near = np.nonzero(np.abs(e0[q] - e0[q, top]) < settings.degeneracy_tolerance_ev)[0]
            lo, hi = int(near.min()), int(near.max())
            if hi > lo:
                multiplets.append((int(k), 2 * lo, 2 * hi + 1))
    return BandReference(kpts=kpts, n_grid=n_grid, Linv=Linv, eig=eig, fermi_level=sample.fermi_level, n_occ=n_occ,
                         multiplets=np.array(multiplets, np.int64).reshape(-1, 3), path_x=path.x,
                         path_labels=path.labels, path_breaks=path.breaks)


class BandCache:
    """On-disk cache of :class:`BandReference`: ``<root>/<fingerprint[:16]>/<settings key>/<sha1(id)>.npz``.

    A missing, unreadable or stale file is recomputed (and rewritten atomically).
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str, settings: BandSettings):
        self.dir = Path(root) / fingerprint[:16] / settings.key()

    def path(self, sid: str) -> Path:
        return self.dir / (hashlib.sha1(sid.encode()).hexdigest() + ".npz")

    def get(self, sid: str) -> BandReference | None:
        p = self.path(sid)
        if not p.is_file():
            return None
        try:
            return BandReference.load(p)
        except Exception:  # noqa: BLE001 - a damaged cache file is simply recomputed
            return None

    def put(self, sid: str, ref: BandReference) -> None:
        """Store ``ref``; a cache folder that cannot be written is skipped with one warning."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            ref.save(self.path(sid))
        except OSError as err:
            if not getattr(self, "_warned", False):
                warnings.warn(f"reference cache {self.dir} is not writable ({err}); continuing without it",
                              stacklevel=2)
                self._warned = True


# ------------------------------------------------------------------------- band scoring
def band_scores(ref: BandReference, eig_pred: np.ndarray, mu: float, settings: BandSettings) -> dict:
    """Per-structure band comparison (sums and counts, eV) of predicted vs reference eigenvalues.

    ``eig_pred`` (K, M) predicted eigenvalues with the reference S; ``mu`` the structure's gauge
    shift (eV, the matrix metric's mu*): aligned eigenvalues are eig_pred - mu.  Returns

    * ``windows[kset][window] = (sum |raw|, sum |aligned|, count)`` over the (k, band) pairs whose
      *reference* eigenvalue lies in the window (kset 'grid' / 'path'), bands matched by index;
    * ``gap_ref``, ``gap_pred`` (eV, None if undefined), ``soc`` list of (delta_ref, delta_pred);
    * ``ghost[window]``: mean over k-points of max(0, #aligned predicted eigenvalues in
      [E_F - w, E_F + w] - #reference eigenvalues in [E_F - w - m, E_F + w + m]) (m =
      ``ghost_margin_ev``: predicted states without a reference counterpart), and
      ``ghost['below']``: mean over k of #aligned predicted eigenvalues below the lowest reference
      eigenvalue at that k minus ``below_tolerance_ev``.
    """
    masks = ref.masks(settings)
    raw = np.abs(eig_pred - ref.eig)
    aligned_e = eig_pred - mu
    aligned = np.abs(aligned_e - ref.eig)
    ksets = {"grid": slice(0, ref.n_grid), "path": slice(ref.n_grid, len(ref.eig))}
    windows = {}
    for kname, ks in ksets.items():
        windows[kname] = {}
        for wname, m in masks.items():
            mm = m[ks]
            windows[kname][wname] = (float(raw[ks][mm].sum()), float(aligned[ks][mm].sum()), int(mm.sum()))
    soc = [(float(ref.eig[k, hi] - ref.eig[k, lo]), float(eig_pred[k, hi] - eig_pred[k, lo]))
           for k, lo, hi in ref.multiplets]
    ghost = {}
    for wname, w in zip(settings.window_names, settings.windows_ev):
        lo, hi = ref.fermi_level - w, ref.fermi_level + w
        n_pred = ((aligned_e >= lo) & (aligned_e <= hi)).sum(axis=1)
        m = settings.ghost_margin_ev
        n_ref = ((ref.eig >= lo - m) & (ref.eig <= hi + m)).sum(axis=1)
        ghost[wname] = float(np.maximum(0, n_pred - n_ref).mean())
    ghost["below"] = float((aligned_e < ref.eig[:, :1] - settings.below_tolerance_ev).sum(axis=1).mean())
    return {"windows": windows, "gap_ref": ref.gap(), "gap_pred": ref.gap(eig_pred), "soc": soc, "ghost": ghost}
