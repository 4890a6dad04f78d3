"""Interoperability: import and export of other codes' real-space Hamiltonian formats.

* :mod:`.abacus` -- ABACUS LCAO runs: ``STRU``, ``INPUT``, ``running_*.log``, ``*.orb`` headers and
  the real-space CSR text files (``data-HR-sparse_SPIN0.csr`` / ``hrs1_nao.csr``, old and new
  headers, nspin 1 and 4) -> :func:`import_abacus`;
* :mod:`.deeptb` -- DeePTB / dftio h5 (``hamiltonians*.h5``, ``overlaps.h5``) beside an ABACUS run
  -> :func:`import_deeptb`;
* :mod:`.deeph` -- DeepH-dock ("new": ``POSCAR``, ``info.json``, ``hamiltonian.h5``/``overlap.h5``
  with ``atom_pairs``/``chunk_*``/``entries``) and legacy DeepH (``lat.dat``, ``element.dat``, ...,
  keys ``"[Rx, Ry, Rz, i, j]"``, OpenMX order): :func:`import_deeph`, :func:`export_deeph`,
  :func:`export_deeph_dataset`.

Every importer returns a :class:`~materials_ham.sample.Sample` in the project's conventions (eV,
Angstrom, e3nn m order via ``conventions.ORBITAL_TABLES``, spin-major spinor blocks, real spinless
S, edge set = union of supports closed under reversal, exactly Hermitian) and records the source
files with their sha256 in ``sample.provenance["files"]``.  Matrices a source does not contain are
never invented: an absent H0 is stored as zeros and flagged ``info["h0_available"] = False``;
absent band energies leave ``ref_kpts`` empty.
"""
from .abacus import import_abacus, read_csr, read_input, read_orbital_header, read_running_log, read_stru
from .deeph import LAYOUTS as DEEPH_LAYOUTS
from .deeph import export_deeph, export_deeph_dataset, import_deeph
from .deeptb import import_deeptb

__all__ = ["import_abacus", "import_deeptb", "import_deeph", "export_deeph", "export_deeph_dataset",
           "read_csr", "read_input", "read_stru", "read_running_log", "read_orbital_header", "DEEPH_LAYOUTS"]
