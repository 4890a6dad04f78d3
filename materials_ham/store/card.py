"""The dataset card (``dataset_card.md``, the Hub repo's README) generated from a packed dataset.

Everything in the card is computed from the store's index and attributes: sizes, splits,
per-element counts, validation numbers, the engine and its settings; the element-coverage
plot (``element_coverage.png``) is drawn from the same index.  Re-running gives the same card.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..conventions import BENCHMARK_ELEMENTS

CARD_FILE = "dataset_card.md"
COVERAGE_PLOT = "element_coverage.png"
LICENSE = "cc-by-4.0"

CITATION = """\
@misc{materials_ham_soc,
  title  = {Materials-HAM-SOC: a benchmark of machine-learned electronic-structure Hamiltonians
            of crystals with spin-orbit coupling},
  author = {{materials-ham contributors}},
  note   = {Generated with the materials-ham package},
}

@inproceedings{yin2026nextham,
  title     = {NextHAM: Advancing Universal Deep Learning for Electronic-Structure Hamiltonian
               Prediction of Materials},
  author    = {Yin, Shi and others},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2026},
  note      = {arXiv:2509.19877},
}"""


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < bound:
            return name
    return "100K<n<1M"


def _stats(values) -> str:
    v = np.asarray(values, float)
    return f"{v.min():.4g} / {np.median(v):.4g} / {v.mean():.4g} / {v.max():.4g}"


def _table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def element_counts(index) -> Counter:
    """Number of structures containing each element symbol."""
    return Counter(e for els in index["elements"] for e in els)


def plot_element_coverage(index, path: str | os.PathLike) -> Path:
    """A periodic-table heat map of structures per element (benchmark elements only), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.data import chemical_symbols
    from pymatgen.core import Element

    counts = element_counts(index)
    fig, ax = plt.subplots(figsize=(12, 4.6))
    vmax = max(counts.values()) if counts else 1
    cmap = plt.get_cmap("viridis")
    for z in sorted(BENCHMARK_ELEMENTS):
        sym = chemical_symbols[z]
        el = Element(sym)
        x, y = el.group, el.row
        n = counts.get(sym, 0)
        color = cmap(0.15 + 0.85 * n / vmax) if n else (0.92, 0.92, 0.92)
        ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 0.95, 0.95, color=color))
        ax.text(x - 0.025, y - 0.12, sym, ha="center", va="center", fontsize=9,
                color="white" if n and n / vmax > 0.45 else "black", weight="bold")
        ax.text(x - 0.025, y + 0.22, str(n), ha="center", va="center", fontsize=7,
                color="white" if n and n / vmax > 0.45 else "black")
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(6.6, 0.4)
    ax.set_aspect("equal")
    ax.axis("off")
    total = len(index)
    ax.set_title(f"Structures per element ({total} structures, {len(counts)} elements; grey: none)")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, vmax))
    fig.colorbar(sm, ax=ax, fraction=0.02, pad=0.01, label="structures")
    path = Path(path)
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def render_card(index, attrs: dict, *, name: str = "Materials-HAM-SOC", bytes_on_disk: int | None = None) -> str:
    """The card's Markdown text (YAML front matter + body) from an index DataFrame and store attrs."""
    from ase.data import chemical_symbols

    n = len(index)
    splits = Counter(index["split"])
    counts = element_counts(index)
    gen = attrs.get("generation") or {}
    eng = (attrs.get("engines") or [gen.get("engine") or {}])[0]
    settings = eng.get("settings", {})
    version = attrs.get("dataset_version", "")
    conv = attrs.get("conventions", {})
    failures = attrs.get("failures", {})
    tags = ("chemistry", "materials-science", "density-functional-theory", "electronic-structure", "hamiltonian",
            "spin-orbit-coupling")
    yaml = "\n".join(["---", f"license: {LICENSE}", f"pretty_name: {name}", "task_categories:", "- graph-ml",
                      "tags:", *(f"- {t}" for t in tags), "size_categories:", f"- {_size_category(n)}",
                      "configs:", "- config_name: default", "  data_files: index.parquet", "---"])
    lines = [yaml, "", f"# {name}" + (f" ({version})" if version else ""), ""]
    lines += [
        "Real-space electronic-structure Hamiltonians of crystals **with spin-orbit coupling**, for",
        "training and benchmarking machine-learned Hamiltonian models (NextHAM, Yin et al., ICLR 2026).",
        "Each structure carries the converged Kohn-Sham Hamiltonian **H** (the target), the",
        "**zeroth-step Hamiltonian H0** (the same operator on the initial superposition-of-atomic",
        "densities, before any SCF step: a model input and the baseline), and the overlap **S**, as",
        "blocks on every edge (i, j, R) of the union of their supports, in float64/complex128.",
        "",
        f"- **{n} structures**, {len(counts)} elements, {int(index['n_atoms'].sum())} atoms in all.",
        "- Splits: " + ", ".join(f"{k} {splits.get(k, 0)}" for k in ("train", "val", "test")) + ".",
    ]
    if bytes_on_disk:
        lines.append(f"- Size on disk: {bytes_on_disk / 2**20:.1f} MiB ({bytes_on_disk / max(n, 1) / 2**20:.2f} MiB "
                     "per structure, lossless).")
    lines += ["", "## How it was generated", "",
              f"- Engine: **{eng.get('name', '?')} {eng.get('version', '')}** in LCAO mode, "
              f"{settings.get('xc', 'PBE')}, basis `{settings.get('basis', '?')}`, Fermi-Dirac smearing "
              f"{settings.get('smearing', '?')} eV, grid spacing {settings.get('h', '?')} A, Monkhorst-Pack "
              f"density {settings.get('kpt_density', '?')} points per reciprocal A"
              + (f" (fixed mesh {settings.get('kpts')})" if settings.get("kpts") else "")
              + f", density convergence {settings.get('density_convergence', '?')}.",
              "- Structures: " + ", ".join(f"{k} ({v})" for k, v in Counter(index["source"]).most_common()) + "; "
              "prototypes: " + ", ".join(f"{k} {v}" for k, v in Counter(index["prototype"]).most_common() if k) + ".",
              "- H0: the Kohn-Sham Hamiltonian of the initial density, extracted before the first SCF step.",
              "- Every block set is checked against the engine's own Bloch matrices (to 1e-8 eV) and the",
              "  engine's own SOC eigenvalues, and every sample passed the physical validation below.",
              ]
    if failures.get("count"):
        lines.append(f"- Structures that failed generation and are not included: {failures['count']} ("
                     + ", ".join(f"{k}: {v}" for k, v in sorted(failures.get("by_kind", {}).items())) + ").")
    lines += ["", "### Caveats", "",
              "- **Spin-orbit coupling is non-self-consistent.** GPAW's LCAO mode has no self-consistent",
              "  SOC: the SCF is scalar-relativistic and SOC (from the PAW spheres) is added to the",
              "  converged H, as GPAW's own `soc_eigenstates` does; H0 gets the SOC of the initial",
              "  density the same way. Heavy-element band structures differ slightly from fully",
              "  self-consistent SOC (the NextHAM authors used ABACUS with self-consistent SOC).",
              "- Calculations are spin-paired (non-magnetic) even for magnetic elements such as Fe, Co, Ni.",
              "- Structures of the built-in prototype source are ideal prototypes at experimental lattice",
              "  constants, not relaxed; `note` says where a structure is hypothetical."]
    if "val_overlap_positive_definite" in index.columns and len(index):
        lam = index["val_overlap_positive_definite"].to_numpy(float)
        lines += [
            f"- **Ill-conditioned overlaps.** The smallest eigenvalue of S(k) has median {np.median(lam):.2g}; "
            f"{int(np.sum(lam < 1e-6))} of {len(lam)} structures are below 1e-6 (smallest {lam.min():.2g}).",
            "  A prediction error e along a near-null direction of S(k) moves an eigenvalue by about",
            "  e / lambda_min, so a model with a tiny matrix MAE can still produce ghost states far from the",
            "  reference spectrum. Score bands, not only matrix elements (the scorer does both)."]
    lines += [""]
    lines += ["## Conventions", ""]
    lines += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in conv.items()]
    lines += ["- Storage: only the canonical half of the edges (e <= reverse[e]) is stored; the reader rebuilds",
              "  the reverse blocks as exact conjugate transposes, bit-for-bit.",
              f"- Block-dropping threshold: {attrs.get('block_drop_threshold', 0.0)} (no block was dropped).", ""]
    basis = attrs.get("basis", {})
    if basis:
        lines += ["### Basis per element", ""]
        rows = []
        for z, b in sorted(basis.items(), key=lambda kv: int(kv[0])):
            ls = b.get("ls", [])
            rows.append((chemical_symbols[int(z)], b.get("name", ""), "".join("spdfg"[l] for l in ls),
                         sum(2 * l + 1 for l in ls), f"{max(b.get('cutoffs') or [0]):.2f}"))
        lines += [_table(("element", "basis", "shells", "orbitals", "largest radius (A)"), rows), ""]
    lines += ["## Splits", "",
              _table(("split", "structures", "atoms (min-max)", "elements"),
                     [(k, splits.get(k, 0),
                       f"{index[index.split == k].n_atoms.min()}-{index[index.split == k].n_atoms.max()}"
                       if splits.get(k) else "-",
                       len(element_counts(index[index.split == k])))
                      for k in ("train", "val", "test")]), ""]
    lines += ["## Elements", "", f"![structures per element]({COVERAGE_PLOT})", ""]
    order = sorted(counts, key=lambda s: [z for z in range(len(chemical_symbols)) if chemical_symbols[z] == s][0])
    lines += [_table(("element", "structures"), [(s, counts[s]) for s in order]), ""]
    lines += ["## Sizes", "", "min / median / mean / max over structures:", ""]
    size_rows = [("atoms", _stats(index["n_atoms"]))]
    for col, label in (("n_edges", "edges (i, j, R)"), ("nao", "orbitals per cell (spatial)"),
                       ("raw_bytes", "raw float64 bytes of H, H0, S (full edge set)"),
                       ("seconds_total", "engine wall time (s, 1 core)"), ("peak_rss_mib", "engine peak memory (MiB)")):
        if col in index.columns:
            size_rows.append((label, _stats(index[col])))
    lines += [_table(("quantity", "min / median / mean / max"), size_rows), ""]
    val_cols = [c for c in index.columns if c.startswith("val_")]
    if val_cols:
        lines += ["## Validation", "",
                  "Every sample passed these checks (materials_ham.validate); numbers over structures:", "",
                  _table(("check", "median", "worst"),
                         [(c[4:], f"{np.median(index[c]):.3g}",
                           f"{(index[c].min() if c == 'val_overlap_positive_definite' or c == 'val_h0_differs_from_h' else index[c].max()):.3g}")
                          for c in val_cols]), "",
                  "Units: band_reproduction and kramers_degeneracy in meV, hermiticity in eV, "
                  "overlap_positive_definite is the smallest eigenvalue of S(k), h0_differs_from_h the H0 "
                  "gauge MAE (meV), finite and layout are counts of problems.", ""]
    lines += ["## Loading", "", "```python", "from materials_ham.store import open_store",
              "store = open_store('path/to/dataset')",
              "sample = store.by_id(store.index.id[0])  # full H, H0 (complex128), S (float64) blocks",
              "for sample in store.iter_split('test'): ...", "```", "",
              "The Parquet index (`index.parquet`, the `default` config) is what the Hub viewer and",
              "`datasets.load_dataset` show: one row per structure, with its `split` column.", "",
              "## License", "", f"Data: {LICENSE.upper()}. Code (materials-ham): MIT.", "",
              "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def write_card(dataset_dir: str | os.PathLike, *, name: str = "Materials-HAM-SOC", update_manifest: bool = True) -> Path:
    """Write ``dataset_card.md`` and ``element_coverage.png`` into a packed dataset (and re-hash the manifest)."""
    from .layout import MANIFEST_FILE
    from .manifest import build_manifest
    from .reader import open_store

    root = Path(dataset_dir)
    store = open_store(root)
    plot_element_coverage(store.index, root / COVERAGE_PLOT)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()
               and p.name not in (CARD_FILE, MANIFEST_FILE, COVERAGE_PLOT))
    text = render_card(store.index, store.attrs, name=name, bytes_on_disk=size)
    with atomic_write(root / CARD_FILE, "w") as fh:
        fh.write(text)
    if update_manifest:
        build_manifest(root)
    return root / CARD_FILE
