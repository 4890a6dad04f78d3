"""materials-ham: curation and benchmark of ML electronic-structure Hamiltonians with SOC.

Public API (engines and validation are imported lazily, so that reading samples does not
need GPAW or torch):

>>> from materials_ham import load_sample, validate_sample, get_engine, read_structure
>>> from materials_ham import Evaluator, write_predictions          # the scorer (zarr needed)
>>> from materials_ham import load_dataset, collate_graphs, publish  # data + Hub (zarr, huggingface_hub; torch)
"""
from .errors import EngineError, FormatError, HubError, MaterialsHamError, StructureError, ValidationFailed
from .sample import Basis, Crystal, Sample, load_sample

__version__ = "0.1.0"

__all__ = ["Sample", "Crystal", "Basis", "load_sample", "validate_sample", "get_engine", "read_structure",
           "Evaluator", "write_predictions", "load_dataset", "MaterialsHamDataset", "collate_graphs", "publish",
           "MaterialsHamError", "StructureError", "FormatError", "EngineError", "ValidationFailed", "HubError",
           "__version__"]


def __getattr__(name):
    if name == "validate_sample":
        from .validate import validate_sample
        return validate_sample
    if name == "get_engine":
        from .engines import get_engine
        return get_engine
    if name == "read_structure":
        from .structures import read_structure
        return read_structure
    if name in ("Evaluator", "write_predictions"):
        from . import evaluate
        return getattr(evaluate, name)
    if name in ("load_dataset", "MaterialsHamDataset", "collate_graphs"):
        from . import data
        return getattr(data, name)
    if name == "publish":
        from .hub import publish
        return publish
    raise AttributeError(f"module 'materials_ham' has no attribute {name!r}")
