"""DFT engines: :func:`get_engine` returns one by name ('gpaw' is embedded; 'abacus' needs the
``abacus`` binary on PATH, see :mod:`.abacus`)."""
from .base import REFERENCE_KPOINTS, Engine, get_engine

__all__ = ["Engine", "get_engine", "REFERENCE_KPOINTS"]
