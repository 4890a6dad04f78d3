"""The dataset store: a Zarr v3 group of sharded flat arrays + a Parquet index + a manifest.

>>> from materials_ham.store import pack, open_store, verify_dataset
>>> pack("staging/", "dataset/")                      # generator output -> dataset directory
>>> ds = open_store("dataset/"); s = ds.by_id("mp-149")  # a full Sample, bit-identical
>>> verify_dataset("dataset/").ok

Modules: ``layout`` (names, sizing rules), ``writer``, ``reader``, ``manifest``, ``verify``,
``pack``.  Zarr, pyarrow and pandas (the ``store`` extra) are imported only when used.
"""
from .layout import STORE_FORMAT_VERSION
from .manifest import build_manifest, verify_manifest
from .pack import pack
from .reader import DatasetStore, open_store
from .verify import VerifyReport, verify_dataset
from .writer import write_store

__all__ = ["open_store", "DatasetStore", "pack", "write_store", "verify_dataset", "VerifyReport",
           "build_manifest", "verify_manifest", "STORE_FORMAT_VERSION"]
