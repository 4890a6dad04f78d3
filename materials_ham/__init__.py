"""materials-ham: curation and benchmark of ML electronic-structure Hamiltonians with SOC."""
from .errors import EngineError, FormatError, MaterialsHamError, StructureError, ValidationFailed
from .sample import Basis, Crystal, Sample, load_sample

__version__ = "0.1.0"

__all__ = ["Sample", "Crystal", "Basis", "load_sample", "MaterialsHamError", "StructureError", "FormatError",
           "EngineError", "ValidationFailed", "__version__"]
