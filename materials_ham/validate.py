"""Physical validation of a sample.  Every check reports a number, its tolerance and a verdict.

The checks form a table (:data:`CHECKS`): name -> function returning (value, detail).
Energies in the report are in meV unless the unit says otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .conventions import EV_TO_MEV
from .errors import MaterialsHamError
from .gauge import gauge_errors
from .kspace import band_energies, bloch, is_time_reversal_invariant, monkhorst_pack
from .sample import MATRICES, SPINOR, Sample

#: k-grid on which S(k) positive definiteness is checked.
OVERLAP_GRID = (4, 4, 4)


@dataclass
class CheckResult:
    name: str
    value: float
    unit: str
    tolerance: float
    passed: bool
    description: str
    detail: dict = field(default_factory=dict)
    kind: str = "max"  # "max": passes when value <= tolerance; "min": when value > tolerance


@dataclass
class ValidationReport:
    subject: str
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict:
        return {"subject": self.subject, "passed": self.passed, "checks": [asdict(r) for r in self.results]}

    def numbers(self) -> dict[str, float]:
        """Flat {check_name: value} (for indexes and tables)."""
        return {r.name: r.value for r in self.results}


# ------------------------------------------------------------------------------------ checks
def _finite(s: Sample):
    bad = {m: int((~np.isfinite(getattr(s, m))).sum()) for m in MATRICES}
    bad["ref_eigenvalues"] = int((~np.isfinite(s.ref_eigenvalues)).sum())
    return float(sum(bad.values())), bad


def _layout(s: Sample):
    problems = []
    E = s.n_edges
    if E == 0:
        problems.append("no edges")
    if s.edge_index.size and (s.edge_index.min() < 0 or s.edge_index.max() >= s.n_atoms):
        problems.append("edge atom index out of range")
    if len(s.edge_reverse) != E or (E and (s.edge_reverse.min() < 0 or s.edge_reverse.max() >= E)):
        problems.append("reverse index out of range")
    else:
        r = s.edge_reverse
        if not np.array_equal(r[r], np.arange(E)):
            problems.append("reverse index is not an involution")
        if not (np.array_equal(s.edge_index[r], s.edge_index[:, ::-1]) and np.array_equal(s.edge_shift[r], -s.edge_shift)):
            problems.append("reverse edge is not (j, i, -R)")
    try:
        for m in MATRICES:
            want = int(s.block_offsets[-1]) * (4 if SPINOR[m] else 1)
            if getattr(s, m).size != want:
                problems.append(f"{m} has {getattr(s, m).size} entries, basis and edges need {want}")
        if s.ref_eigenvalues.shape[1] != 2 * s.nao:
            problems.append(f"ref_eigenvalues have {s.ref_eigenvalues.shape[1]} bands, expected 2*nao = {2 * s.nao}")
    except MaterialsHamError as err:
        problems.append(str(err))
    keys = {(int(i), int(j), tuple(R)) for (i, j), R in zip(s.edge_index, s.edge_shift.tolist())}
    if len(keys) != E:
        problems.append(f"{E - len(keys)} duplicate edges")
    return float(len(problems)), {"problems": problems}


def _hermiticity(s: Sample):
    dev = {}
    for m in MATRICES:
        worst = 0.0
        for e in range(s.n_edges):
            r = s.edge_reverse[e]
            if e <= r:
                worst = max(worst, float(np.abs(s.block(m, r) - s.block(m, e).conj().T).max(initial=0.0)))
        dev[m] = worst
    return max(dev.values()), {k + "_ev": v for k, v in dev.items()}


def _overlap_pd(s: Sample):
    k = np.vstack([monkhorst_pack(OVERLAP_GRID), s.ref_kpts])
    w = np.linalg.eigvalsh(bloch(s, "S", k))
    cond = float((w[:, -1] / np.where(w[:, 0] > 0, w[:, 0], np.nan)).max()) if (w[:, 0] > 0).all() else float("inf")
    return float(w[:, 0].min()), {"max_condition_number": cond, "n_kpoints": len(k)}


def _band_reproduction(s: Sample):
    e = band_energies(s, s.ref_kpts)
    dev = np.abs(e - s.ref_eigenvalues) * EV_TO_MEV
    return float(dev.max()), {"mean_mev": float(dev.mean()), "n_kpoints": len(s.ref_kpts)}


def _kramers(s: Sample):
    k = monkhorst_pack((2, 2, 2))  # the 8 time-reversal-invariant momenta
    assert is_time_reversal_invariant(k).all()
    e = band_energies(s, k)
    split = (e[:, 1::2] - e[:, 0::2]) * EV_TO_MEV
    return float(split.max()), {"n_kpoints": len(k)}


def _h0_differs(s: Sample):
    g = gauge_errors(s, s.H0, s.H)
    return float(g["spin_diag_real"]), {"max_abs_diff_mev": float(np.abs(s.H0 - s.H).max() * EV_TO_MEV),
                                        "gauge_mu_ev": g["mu_ev"]}


@dataclass(frozen=True)
class Check:
    name: str
    func: Callable[[Sample], tuple[float, dict]]
    unit: str
    tolerance: float
    kind: str  # "max": value <= tolerance passes; "min": value > tolerance passes
    description: str
    applies: Callable[[Sample], bool] = lambda s: True


CHECKS: tuple[Check, ...] = (
    Check("finite", _finite, "count", 0, "max", "non-finite entries in H, H0, S, reference eigenvalues"),
    Check("layout", _layout, "count", 0, "max", "block sizes match the basis; reverse-edge index consistent"),
    Check("hermiticity", _hermiticity, "eV", 1e-10, "max", "max |X_ji(-R) - X_ij(R)^dagger| over H, H0, S"),
    Check("overlap_positive_definite", _overlap_pd, "", 1e-8, "min",
          "smallest eigenvalue of S(k) on a 4x4x4 grid and the reference k-points"),
    Check("band_reproduction", _band_reproduction, "meV", 0.01, "max",
          "max |eig(H(k), S(k) x I2) - engine's own SOC eigenvalues|",
          applies=lambda s: len(s.ref_kpts) > 0),  # imported samples may carry no engine eigenvalues
    Check("kramers_degeneracy", _kramers, "meV", 1.0, "max",
          "max splitting of Kramers pairs at the 8 time-reversal-invariant k-points (non-magnetic)",
          applies=lambda s: "non-magnetic" in s.engine.get("spin", "non-magnetic")),
    Check("h0_differs_from_h", _h0_differs, "meV", 1e-6, "min",
          "gauge-standardised MAE(H0 - H), spin-diagonal real part (flagged when H0 equals H)"),
)

_STRUCTURAL = {"finite", "layout"}


def validate_sample(sample: Sample, *, subject: str | None = None, checks=CHECKS) -> ValidationReport:
    """Run every check; later checks are skipped (reported failed) if the layout is broken."""
    subject = subject or sample.provenance.get("source_id") or sample.crystal.formula
    results: list[CheckResult] = []
    broken = False
    for c in checks:
        if not c.applies(sample):
            continue
        if broken and c.name not in _STRUCTURAL:
            results.append(CheckResult(c.name, float("nan"), c.unit, c.tolerance, False, c.description,
                                       {"skipped": "layout or finiteness check failed"}, c.kind))
            continue
        try:
            value, detail = c.func(sample)
        except MaterialsHamError as err:
            value, detail = float("nan"), {"error": str(err)}
        except np.linalg.LinAlgError as err:
            value, detail = float("nan"), {"error": f"linear algebra failed: {err}"}
        ok = bool(np.isfinite(value) and (value <= c.tolerance if c.kind == "max" else value > c.tolerance))
        results.append(CheckResult(c.name, float(value), c.unit, c.tolerance, ok, c.description, detail, c.kind))
        if c.name in _STRUCTURAL and not ok:
            broken = True
    return ValidationReport(subject, results)
