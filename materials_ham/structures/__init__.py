"""Structures: reading files, the built-in prototypes, sources, curation and splits."""
from .io import check_structure, read_structure
from .prototypes import DEFAULT_SET, default_structures
from .curate import equivalents, pymatgen_structure, structure_matcher

__all__ = ["read_structure", "check_structure", "default_structures", "DEFAULT_SET", "structure_matcher",
           "pymatgen_structure", "equivalents"]
