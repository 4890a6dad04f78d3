"""ABACUS (LCAO, the NextHAM authors' engine) as an engine, for users with the ``abacus`` binary.

One :meth:`AbacusEngine.compute` runs, each in its own folder under ``workdir`` (kept for
inspection when ``keep=True``):

1. ``scf/``: the SCF with SOC and the NextHAM paper's settings (PBE through the pseudopotentials,
   nspin 4, lspinorb 1, all atoms started non-magnetic, ecutwfc 100 Ry, scf_thr 1e-6, a
   Gamma-centred k-mesh of spacing 0.10 / Bohr written to ``KPT``), writing H(R), S(R)
   (``out_mat_hs2 1``) and the charge density;
2. ``bands/``: a non-SCF run on that density at :data:`REFERENCE_KPOINTS` with all 2 nao bands
   (the engine's own eigenvalues, ``ref_eigenvalues``);
3. ``h0/`` (``h0_mode="get_hs"``): the paper's zeroth-step Hamiltonian, ``calculation get_hs``
   (the authors' patched ABACUS build: one H on the superposition of atomic densities, no
   diagonalisation).  ``h0_mode="none"`` skips it; the sample then says H0 is absent.

The results are imported with :func:`materials_ham.formats.import_abacus` (same units and
conventions as every sample).  Pseudopotentials (fully relativistic, ``.upf``) and numerical
orbitals (``.orb``) are not shipped: give ``pseudo_dir``/``orbital_dir`` (files found by element
prefix, e.g. ``Ga_*.upf``) or explicit per-element file names; the environment variables
``MATERIALS_HAM_ABACUS_PSEUDO_DIR``, ``MATERIALS_HAM_ABACUS_ORBITAL_DIR`` and
``MATERIALS_HAM_ABACUS_COMMAND`` give the defaults (so that ``materials-ham compute --engine abacus``
works).  Without ``abacus`` on PATH (or
``command``), :meth:`compute` raises :class:`EngineError`; :meth:`write_inputs` works anywhere.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ..conventions import BOHR_ANGSTROM, RYDBERG_EV, check_elements
from ..errors import EngineError, FormatError
from ..sample import Crystal, Sample
from .base import REFERENCE_KPOINTS, register


@dataclass
class AbacusSettings:
    """Settings of an ABACUS run (defaults: the NextHAM paper's).

    ``kspacing`` in 1/Bohr (mesh n_i = max(1, ceil(|b_i| / kspacing)), |b_i| = 2 pi / a_i-ish
    reciprocal lengths in 1/Bohr); ``ecutwfc`` in Ry; ``smearing_sigma`` in Ry.
    ``pseudopotentials``/``orbitals``: {element symbol: file name} overriding the search in
    ``pseudo_dir``/``orbital_dir``.  ``command``: how to start ABACUS (e.g. "mpirun -np 16 abacus").
    """

    pseudo_dir: str = ""
    orbital_dir: str = ""
    pseudopotentials: dict = field(default_factory=dict)
    orbitals: dict = field(default_factory=dict)
    command: str = "abacus"
    ecutwfc: float = 100.0
    scf_thr: float = 1e-6
    scf_nmax: int = 100
    kspacing: float = 0.10
    kpts: tuple[int, int, int] | None = None
    smearing_method: str = "gaussian"
    smearing_sigma: float = 0.002
    mixing_beta: float = 0.4
    ks_solver: str = "genelpa"
    h0_mode: str = "get_hs"
    workdir: str | None = None
    keep: bool = False
    timeout: float | None = None
    reference_kpts: tuple = field(default=REFERENCE_KPOINTS)

    def mp_grid(self, crystal: Crystal) -> tuple[int, int, int]:
        if self.kpts is not None:
            return tuple(int(k) for k in self.kpts)
        rec = 2 * np.pi * np.linalg.norm(np.linalg.inv(crystal.cell / BOHR_ANGSTROM).T, axis=1)  # 1/Bohr
        return tuple(int(max(1, np.ceil(b / self.kspacing - 1e-8))) for b in rec)


def _find(folder: str, symbol: str, suffix: str, explicit: dict, what: str) -> str:
    if symbol in explicit:
        return str(explicit[symbol])
    if not folder:
        raise EngineError(f"no {what} for {symbol}: set {what}_dir or {what}s={{'{symbol}': FILE}}")
    hits = sorted(p.name for p in Path(folder).glob(f"{symbol}_*{suffix}")) + \
        sorted(p.name for p in Path(folder).glob(f"{symbol}.*{suffix}"))
    if len(hits) != 1:
        raise EngineError(f"{'no' if not hits else 'several'} {what} file(s) for {symbol} in {folder} "
                          f"({', '.join(hits) or f'{symbol}_*{suffix}'}); name one explicitly")
    return hits[0]


@register
class AbacusEngine:
    """``AbacusEngine(pseudo_dir=..., orbital_dir=..., command='abacus', ...)`` (see :class:`AbacusSettings`)."""

    name = "abacus"

    def __init__(self, **settings):
        # the generic engine options of the CLI (GPAW's basis name, grid spacing, k-density) mean nothing
        # here: ABACUS's basis is its orbital files, its k-mesh comes from kspacing (or kpts)
        settings = {k: v for k, v in settings.items() if k not in ("basis", "h", "kpt_density")}
        settings.setdefault("pseudo_dir", os.environ.get("MATERIALS_HAM_ABACUS_PSEUDO_DIR", ""))
        settings.setdefault("orbital_dir", os.environ.get("MATERIALS_HAM_ABACUS_ORBITAL_DIR", ""))
        settings.setdefault("command", os.environ.get("MATERIALS_HAM_ABACUS_COMMAND", "abacus"))
        if "smearing" in settings:
            sm = settings.pop("smearing")
            if sm is not None:
                settings["smearing_sigma"] = float(sm) / RYDBERG_EV  # eV -> Ry
        try:
            self.cfg = AbacusSettings(**settings)
        except TypeError as err:
            raise EngineError(f"bad ABACUS setting: {err}") from None
        if self.cfg.h0_mode not in ("get_hs", "none"):
            raise EngineError(f"h0_mode must be 'get_hs' or 'none', not {self.cfg.h0_mode!r}")

    # ----------------------------------------------------------------------------- API
    def settings(self) -> dict:
        d = asdict(self.cfg)
        d["reference_kpts"] = [list(k) for k in d["reference_kpts"]]
        return d

    def binary(self) -> str:
        """Full path of the ABACUS executable; :class:`EngineError` when it is not installed."""
        exe = shlex.split(self.cfg.command)
        prog = next((w for w in exe if not w.startswith("-") and Path(w).name == "abacus"), exe[-1] if exe else "")
        found = shutil.which(prog) if prog else None
        if not found:
            raise EngineError(f"the ABACUS binary {prog or self.cfg.command!r} is not on PATH: the ABACUS engine needs "
                              "an ABACUS installation (https://abacus.deepmodeling.com); use --engine gpaw otherwise")
        return found

    def check_coverage(self, crystal: Crystal, *, subject: str | None = None) -> None:
        check_elements(crystal.numbers, subject=subject)
        if not crystal.pbc.all():
            raise EngineError("the ABACUS engine needs a structure periodic in all three directions", subject=subject)
        if self.cfg.pseudo_dir or self.cfg.pseudopotentials:
            for z in sorted(set(map(int, crystal.numbers))):
                sym = chemical_symbols[z]
                try:
                    _find(self.cfg.pseudo_dir, sym, ".upf", self.cfg.pseudopotentials, "pseudo")
                    _find(self.cfg.orbital_dir, sym, ".orb", self.cfg.orbitals, "orbital")
                except EngineError as err:
                    raise EngineError(str(err), subject=subject) from None

    def write_inputs(self, crystal: Crystal, folder, *, calculation: str = "scf", kpoints=None) -> Path:
        """Write INPUT, STRU and KPT of one run into ``folder`` (created).

        ``calculation``: 'scf' (mesh KPT, H/S output), 'nscf' (explicit reduced ``kpoints``, all
        bands, density read from ../scf) or 'get_hs' (H0, patched build).
        """
        cfg = self.cfg
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        species = list(dict.fromkeys(int(z) for z in crystal.numbers))
        syms = [chemical_symbols[z] for z in species]
        pps = [_find(cfg.pseudo_dir, s, ".upf", cfg.pseudopotentials, "pseudo") for s in syms]
        orbs = [_find(cfg.orbital_dir, s, ".orb", cfg.orbitals, "orbital") for s in syms]
        nbands = self._nbands(crystal, species, orbs)
        lines = ["ATOMIC_SPECIES"] + [f"{s} 1.0 {p}" for s, p in zip(syms, pps)] + ["", "NUMERICAL_ORBITAL"]
        lines += orbs + ["", "LATTICE_CONSTANT", f"{1 / BOHR_ANGSTROM!r}  // 1 Angstrom in Bohr", "", "LATTICE_VECTORS"]
        lines += ["  ".join(repr(float(x)) for x in row) for row in crystal.cell]
        lines += ["", "ATOMIC_POSITIONS", "Cartesian_angstrom", ""]
        for z, s in zip(species, syms):
            idx = np.nonzero(crystal.numbers == z)[0]
            lines += [s, "0.0", str(len(idx))]
            lines += ["  ".join(repr(float(x)) for x in crystal.positions[a]) + "  0 0 0" for a in idx]
            lines.append("")
        (folder / "STRU").write_text("\n".join(lines) + "\n")
        params = {
            "calculation": calculation, "basis_type": "lcao", "ntype": len(species), "nspin": 4, "lspinorb": 1,
            "noncolin": 0, "ecutwfc": cfg.ecutwfc, "scf_thr": cfg.scf_thr, "scf_nmax": cfg.scf_nmax,
            "smearing_method": cfg.smearing_method, "smearing_sigma": cfg.smearing_sigma,
            "mixing_beta": cfg.mixing_beta, "ks_solver": cfg.ks_solver, "symmetry": -1,
            "pseudo_dir": os.path.abspath(cfg.pseudo_dir) if cfg.pseudo_dir else ".",
            "orbital_dir": os.path.abspath(cfg.orbital_dir) if cfg.orbital_dir else ".",
            "out_mat_hs2": 1 if calculation in ("scf", "get_hs") else 0,
            "out_chg": 1 if calculation == "scf" else 0,
        }
        if nbands:
            params["nbands"] = nbands
        if calculation == "nscf":
            params.update(init_chg="file", read_file_dir="../scf/OUT.ABACUS", out_band=1)
        (folder / "INPUT").write_text("INPUT_PARAMETERS\n" + "".join(f"{k:<20} {v}\n" for k, v in params.items()))
        if kpoints is None:
            mesh = cfg.mp_grid(crystal)
            kpt = f"K_POINTS\n0\nGamma\n{mesh[0]} {mesh[1]} {mesh[2]} 0 0 0\n"
        else:
            k = np.atleast_2d(np.asarray(kpoints, float))
            kpt = f"K_POINTS\n{len(k)}\nDirect\n" + "".join(f"{a!r} {b!r} {c!r} 1\n" for a, b, c in k)
        (folder / "KPT").write_text(kpt)
        return folder

    def _nbands(self, crystal: Crystal, species, orbs) -> int | None:
        """2 nao (all spinor bands) from the .orb headers; None when they cannot be read here."""
        from ..formats.abacus import read_orbital_header

        try:
            per = {z: sum(2 * l + 1 for l in read_orbital_header(Path(self.cfg.orbital_dir) / o).ls)
                   for z, o in zip(species, orbs)}
        except FormatError:
            return None
        return 2 * int(sum(per[int(z)] for z in crystal.numbers))

    def _run(self, folder: Path, subject: str) -> None:
        cmd = shlex.split(self.cfg.command)
        try:
            with open(folder / "abacus.stdout", "w") as out:
                proc = subprocess.run(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, timeout=self.cfg.timeout)
        except subprocess.TimeoutExpired:
            raise EngineError(f"ABACUS did not finish in {self.cfg.timeout} s ({folder.name})", subject=subject) from None
        except OSError as err:
            raise EngineError(f"cannot start ABACUS ({err})", subject=subject) from None
        if proc.returncode != 0:
            tail = (folder / "abacus.stdout").read_text(errors="replace").strip().splitlines()[-3:]
            raise EngineError(f"ABACUS failed in {folder.name}/ (exit {proc.returncode}): {' | '.join(tail)}",
                              subject=subject)

    def compute(self, crystal: Crystal, *, provenance: dict | None = None) -> Sample:
        from ..formats.abacus import import_abacus, read_eig_occ, read_stru

        provenance = dict(provenance or {})
        subject = provenance.get("source_id") or crystal.formula
        self.check_coverage(crystal, subject=subject)
        self.binary()
        t0 = time.perf_counter()
        base = Path(tempfile.mkdtemp(prefix="abacus-", dir=self.cfg.workdir))
        try:
            self.write_inputs(crystal, base / "scf")
            self._run(base / "scf", subject)
            t_scf = time.perf_counter()
            ref_k = np.array(self.cfg.reference_kpts, float)
            self.write_inputs(crystal, base / "bands", calculation="nscf", kpoints=ref_k)
            self._run(base / "bands", subject)
            h0_dir = None
            if self.cfg.h0_mode == "get_hs":
                self.write_inputs(crystal, base / "h0", calculation="get_hs")
                self._run(base / "h0", subject)
                h0_dir = base / "h0"
            try:
                sample = import_abacus(base / "scf", h0_dir=h0_dir)
                eig = next(iter(sorted((base / "bands").glob("OUT.*/eig_occ.txt"))), None)
                if eig is None:
                    raise EngineError("the band run wrote no eig_occ.txt (ABACUS older than 3.10?)", subject=subject)
                sec = read_eig_occ(eig, read_stru(base / "bands" / "STRU"))[-1]
            except FormatError as err:
                raise EngineError(f"could not import the ABACUS output: {err}", subject=subject) from None
            if len(sec["kpts"]) != len(ref_k) or not np.allclose(sec["kpts"], ref_k, atol=1e-6):
                raise EngineError("the band run's k-points differ from the reference k-points", subject=subject)
            if sec["eigenvalues_ev"].shape[1] != 2 * sample.nao:
                raise EngineError(f"the band run gave {sec['eigenvalues_ev'].shape[1]} bands, not 2 nao = "
                                  f"{2 * sample.nao}", subject=subject)
            sample.ref_kpts = ref_k
            sample.ref_eigenvalues = sec["eigenvalues_ev"]
            sample.engine["settings"] = self.settings()
            sample.engine["mp_grid"] = list(self.cfg.mp_grid(crystal))
            sample.provenance = {**provenance, "formula": crystal.formula,
                                 "abacus_import": sample.provenance}
            sample.info.update(seconds_scf=t_scf - t0, seconds_total=time.perf_counter() - t0,
                               workdir=str(base) if self.cfg.keep else None)
            return sample
        finally:
            if not self.cfg.keep:
                shutil.rmtree(base, ignore_errors=True)
