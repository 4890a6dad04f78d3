"""Each physical check passes on real engine output and can fail on a corrupted sample."""
import numpy as np
import pytest

from materials_ham.validate import CHECKS, validate_sample


def test_real_sample_passes_all_checks(si_sample):
    report = validate_sample(si_sample)
    assert report.passed, report.failures()
    assert {r.name for r in report.results} == {c.name for c in CHECKS}
    assert report["band_reproduction"].value < 1e-3  # meV; tolerance is 0.01
    assert report["overlap_positive_definite"].detail["max_condition_number"] > 1


def _first_offsite(s):
    return int(np.nonzero(~s.is_onsite)[0][0])


def corrupt_nan(s):
    s.H[3] = np.nan


def corrupt_layout(s):
    s.edge_reverse[[0, 1]] = s.edge_reverse[[1, 0]]


def corrupt_hermiticity(s):
    s.block("H0", _first_offsite(s))[0, 1] += 1e-3


def corrupt_overlap(s):
    onsite = int(np.nonzero(s.is_onsite)[0][0])
    s.block("S", onsite)[0, 0] = -1.0


def corrupt_bands(s):
    s.ref_eigenvalues[1, 3] += 0.02e-3  # 0.02 meV, twice the tolerance


def corrupt_kramers(s):
    # a Zeeman-like field on every on-site block breaks time reversal (stays Hermitian)
    for e in np.nonzero(s.is_onsite)[0]:
        b = s.block("H", e)
        n = b.shape[0] // 2
        b[:n, :n] += 0.01 * np.eye(n)
        b[n:, n:] -= 0.01 * np.eye(n)
    s.ref_eigenvalues[:] = np.nan_to_num(s.ref_eigenvalues)


def corrupt_h0(s):
    s.H0[:] = s.H


@pytest.mark.parametrize("check, corrupt", [
    ("finite", corrupt_nan),
    ("layout", corrupt_layout),
    ("hermiticity", corrupt_hermiticity),
    ("overlap_positive_definite", corrupt_overlap),
    ("band_reproduction", corrupt_bands),
    ("kramers_degeneracy", corrupt_kramers),
    ("h0_differs_from_h", corrupt_h0),
])
def test_each_check_can_fail(si_sample, check, corrupt):
    s = si_sample.copy()
    corrupt(s)
    report = validate_sample(s)
    assert not report[check].passed, report[check]
    assert not report.passed
