"""The on-disk layout of a packed dataset: the one home of its names and sizing rules.

A dataset is a directory::

    DATASET/store.zarr/      one Zarr v3 group: flat arrays concatenated over all structures
    DATASET/index.parquet    one row per structure: catalog fields, metadata, offsets
    DATASET/manifest.json    sha256 and size of every other file

Every array of ``store.zarr`` is concatenated over the structures along axis 0, in storage
order.  Structure ``k`` owns rows ``[<unit>_start, <unit>_stop)`` of every array of that
``unit`` (see :data:`ARRAYS`); the offsets are both in ``index.parquet`` (columns
``<unit>_start`` / ``<unit>_stop``) and in the ``offsets`` array (N+1, len(UNITS)) of
cumulative starts, so a reader can locate a structure from either.

Only the canonical half of the edges (e <= reverse[e]) is stored, in the sample's edge order,
and the blocks are flattened exactly as :meth:`materials_ham.sample.Sample.save` does; the
reader rebuilds the other half with :class:`~materials_ham.sample.HalfEdges` (as
:meth:`~materials_ham.sample.Sample.from_half` does).

Arrays are sharded (``sharding_indexed`` codec): one file per shard of about
``shard_mib`` MiB of raw data, made of inner chunks of about :data:`CHUNK_BYTES` so that
reading one structure decodes little.  Each inner chunk is ``bytes`` -> Blosc (zstd level 5,
no shuffle) -> ``crc32c``; the shard index also carries a crc32c.  Compression is lossless;
complex128 stays complex128.  (Measured on GPAW SrTiO3/PbTe blocks: no shuffle gives 0.10-0.11
of the raw bytes and decodes at ~2.5 GB/s; byte shuffle 0.15-0.16 and ~2 GB/s, bit shuffle
~0.35 and ~1 GB/s.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STORE_FORMAT_VERSION = 1

STORE_DIR = "store.zarr"
INDEX_FILE = "index.parquet"
MANIFEST_FILE = "manifest.json"

#: Target raw bytes of one inner chunk (the unit of decoding on a random read).
CHUNK_BYTES = 1 << 20
#: Default target raw bytes of one shard (the unit of files on disk).  Blocks compress to about
#: 0.1 of their raw size, so a full shard of H or H0 is ~100-150 MiB on disk: few, large files.
#: The writer buffers one shard per array (~2.3 GiB for H + H0 + S at this size).
DEFAULT_SHARD_MIB = 1024
#: Blosc settings of the inner chunks (see the module docstring for the measurement behind them).
BLOSC = {"cname": "zstd", "clevel": 5, "shuffle": "noshuffle"}
#: Threshold below which whole blocks were dropped from the edge set (0.0: nothing dropped).
BLOCK_DROP_THRESHOLD = 0.0

#: Row units of the arrays; structure k owns rows [start, stop) of each.
#:   atom: atoms; edge: stored (canonical) edges; s: entries of stored S blocks;
#:   h: entries of stored H / H0 blocks; kpt: reference k-points; eig: reference eigenvalues;
#:   structure: one row per structure.
UNITS = ("atom", "edge", "s", "h", "kpt", "eig")


@dataclass(frozen=True)
class ArraySpec:
    """An array of the store: dtype, shape after axis 0, row unit, and meaning (with units)."""

    dtype: str
    tail: tuple[int, ...]
    unit: str
    doc: str


ARRAYS: dict[str, ArraySpec] = {
    "numbers": ArraySpec("int64", (), "atom", "atomic numbers Z"),
    "positions": ArraySpec("float64", (3,), "atom", "Cartesian positions, Angstrom"),
    "cell": ArraySpec("float64", (3, 3), "structure", "lattice vectors as rows, Angstrom"),
    "pbc": ArraySpec("bool", (3,), "structure", "periodic boundary conditions"),
    "edge_index": ArraySpec("int64", (2,), "edge", "(i, j) atom indices (0-based, within the structure) "
                                                   "of the stored canonical edges (e <= reverse[e])"),
    "edge_shift": ArraySpec("int64", (3,), "edge", "lattice shift R of atom j, integer"),
    "H": ArraySpec("complex128", (), "h", "converged SOC Hamiltonian blocks, spin-major, flat, eV"),
    "H0": ArraySpec("complex128", (), "h", "zeroth-step (initial-density) SOC Hamiltonian blocks, flat, eV"),
    "S": ArraySpec("float64", (), "s", "overlap blocks (spinless), flat"),
    "ref_kpts": ArraySpec("float64", (3,), "kpt", "reference k-points, reduced coordinates"),
    "ref_eigenvalues": ArraySpec("float64", (), "eig", "engine SOC band energies at ref_kpts, "
                                                       "flat (K * 2 nao), eV"),
}
OFFSETS_ARRAY = "offsets"
#: (N+1, len(UNITS)) int64: cumulative row starts of each unit; row N holds the totals.
OFFSETS_SPEC = ArraySpec("int64", (len(UNITS),), "structure+1", "cumulative row starts per unit " + str(UNITS))


def start_column(unit: str) -> str:
    return f"{unit}_start"


def stop_column(unit: str) -> str:
    return f"{unit}_stop"


#: Columns of index.parquet that hold per-structure metadata as JSON strings.
JSON_COLUMNS = {"engine": "engine_json", "provenance": "provenance_json", "info": "info_json"}


def chunking(spec: ArraySpec, shard_mib: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(inner chunk shape, shard shape) of an array: ~CHUNK_BYTES per chunk, ~shard_mib per shard.

    Only axis 0 is split; the shard holds a whole number of chunks.
    """
    row_bytes = np.dtype(spec.dtype).itemsize * int(np.prod(spec.tail, dtype=np.int64))
    chunk_rows = max(1, CHUNK_BYTES // row_bytes)
    chunks_per_shard = max(1, int(shard_mib * (1 << 20)) // (chunk_rows * row_bytes))
    return (chunk_rows, *spec.tail), (chunk_rows * chunks_per_shard, *spec.tail)


def shard_key(name: str, shard: int, ndim: int) -> str:
    """Path, relative to ``store.zarr``, of shard number ``shard`` (along axis 0) of array ``name``."""
    return "/".join([name, "c", str(shard)] + ["0"] * (ndim - 1))
