"""The embedded default structures (real crystal prototypes, experimental lattice constants).

These are what ``materials-ham demo`` computes: small cells that cover a light covalent
semiconductor, a polar III-V, a heavy-element compound with large SOC and a perovskite.
"""
from __future__ import annotations

from ..sample import Crystal


def _si():
    from ase.build import bulk
    return bulk("Si", "diamond", a=5.431)


def _gaas():
    from ase.build import bulk
    return bulk("GaAs", "zincblende", a=5.653)


def _pbte():
    from ase.build import bulk
    return bulk("PbTe", "rocksalt", a=6.462)


def _srtio3():
    from ase import Atoms
    a = 3.905
    return Atoms("SrTiO3", scaled_positions=[(0, 0, 0), (.5, .5, .5), (.5, .5, 0), (.5, 0, .5), (0, .5, .5)],
                 cell=[a, a, a], pbc=True)


#: name -> (builder, source note)
DEFAULT_SET = {
    "Si-diamond": (_si, "diamond Si, a = 5.431 A (experiment)"),
    "GaAs-zincblende": (_gaas, "zinc-blende GaAs, a = 5.653 A (experiment)"),
    "PbTe-rocksalt": (_pbte, "rock-salt PbTe, a = 6.462 A (experiment)"),
    "SrTiO3-perovskite": (_srtio3, "cubic perovskite SrTiO3, a = 3.905 A (experiment)"),
}


def default_structures(names=None) -> dict[str, tuple[Crystal, dict]]:
    """{name: (crystal, provenance)} of the embedded default set (all, or ``names``)."""
    out = {}
    for name in names or DEFAULT_SET:
        build, note = DEFAULT_SET[name]
        out[name] = (Crystal.from_ase(build()), {"source": "materials-ham prototypes", "source_id": name,
                                                "note": note})
    return out
