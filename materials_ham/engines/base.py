"""The engine interface: a structure in, one :class:`~materials_ham.sample.Sample` out.

An engine computes, for a crystal, the overlap S, the zeroth-step Hamiltonian H0
(the Kohn-Sham operator on the superposition of atomic densities, before any SCF
step), the converged H, both with SOC, and its own SOC band energies at a few
k-points for validation.  GPAW (embedded, default) and ABACUS (HPC) plug in here.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..sample import Crystal, Sample

#: k-points (reduced) at which every engine records its own SOC eigenvalues: three
#: time-reversal-invariant points and two generic ones.
REFERENCE_KPOINTS = (
    (0.0, 0.0, 0.0),
    (0.5, 0.0, 0.0),
    (0.5, 0.5, 0.5),
    (0.1, 0.2, 0.3),
    (0.3, -0.2, 0.15),
)


@runtime_checkable
class Engine(Protocol):
    """What the pipeline needs from a DFT engine."""

    name: str

    def settings(self) -> dict:
        """The settings that determine the result (stored in every sample)."""

    def check_coverage(self, crystal: Crystal, *, subject: str | None = None) -> None:
        """Raise EngineError if this engine cannot treat the structure (e.g. missing data)."""

    def compute(self, crystal: Crystal, *, provenance: dict | None = None) -> Sample:
        """Run the engine; return a Hermitian sample with H, H0 (SOC spinor) and S."""


_REGISTRY: dict[str, type] = {}


def register(cls):
    _REGISTRY[cls.name] = cls
    return cls


def get_engine(name: str = "gpaw", **settings) -> Engine:
    """Instantiate a registered engine by name with the given settings."""
    from ..errors import EngineError
    from . import abacus, gpaw  # noqa: F401  (register themselves)

    try:
        return _REGISTRY[name](**settings)
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; available: {sorted(_REGISTRY)}") from None
