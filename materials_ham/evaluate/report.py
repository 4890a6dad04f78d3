"""Human-readable output of an evaluation: summary tables, a Markdown/HTML report and plots.

:func:`summary_tables` is the one place that decides what the summary shows; the CLI prints
it with rich, :func:`write_report` renders it to ``report.md`` and ``report.html`` beside
``metrics.json`` and the plots (matplotlib, Agg backend):

* ``parity.png``: predicted (gauge-aligned) vs reference real parts of a random sample of the
  scored spin-diagonal entries;
* ``element_pair_mae.png``: heatmap of the spin-diagonal real MAE by element pair;
* ``bands_best.png``, ``bands_median.png``, ``bands_worst.png``: reference and predicted
  (gauge-aligned) bands on the high-symmetry path of the structures with the lowest, median
  and highest headline MAE.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..errors import MaterialsHamError
from .evaluator import Evaluation

REPORT_MARKER = "report.md"


def _f(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000 or (0 < abs(x) < 10 ** -digits):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.1f}"
    return f"{x:.{digits}f}"


def summary_tables(metrics: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """[(title, headers, rows)] of the summary; all numbers in meV unless a unit is given."""
    m = metrics["matrix"]
    ov = m["overall"].get("all", {})
    n = metrics["n_structures"]
    tables = []
    rows = []
    for blk in ("uu", "ud", "du", "dd"):
        rows.append([blk, _f(_q(ov, f"{blk}_real")), _f(_q(ov, f"{blk}_imag")),
                     _f(_q(ov, f"{blk}_real", "pooled")), _f(_q(ov, f"{blk}_imag", "pooled"))])
    rows.append(["spin-diag (uu, dd)", _f(_q(ov, "spin_diag_real")), "", _f(_q(ov, "spin_diag_real", "pooled")), ""])
    rows.append(["all four blocks", _f(_q(ov, "real")), _f(_q(ov, "imag")), _f(_q(ov, "real", "pooled")),
                 _f(_q(ov, "imag", "pooled"))])
    tables.append((f"Gauge-standardised H MAE (meV), split {metrics['split']}, {n} structures, edges |r| < "
                   f"{metrics['settings']['edge_cutoff_angstrom']:g} A (NextHAM paper format; headline: spin-diag real)",
                   ["spin block", "real", "imag", "real (pooled)", "imag (pooled)"], rows))
    rows = []
    for name, grouping in (("site", "site"), ("distance (A)", "distance")):
        for key, e in m[grouping].items():
            rows.append([f"{name}: {key}", _f(_q(e, "spin_diag_real")), _f(_q(e, "real")), _f(_q(e, "imag")),
                         str(e["n_structures"]), str(e["n_entries"])])
    a = m["all_stored_edges"].get("all", {})
    rows.append(["all stored edges", _f(_q(a, "spin_diag_real")), _f(_q(a, "real")), _f(_q(a, "imag")),
                 str(a.get("n_structures", 0)), str(a.get("n_entries", 0))])
    tables.append(("Breakdown (meV, mean over structures)", ["group", "spin-diag real", "real", "imag", "structures",
                                                              "entries"], rows))
    rows = [[key, _f(_q(e, "spin_diag_real")), _f(_q(e, "imag")), str(e["n_structures"])]
            for key, e in m["element"].items()]
    tables.append(("By element (meV; blocks with an atom of the element)", ["element", "spin-diag real", "imag",
                                                                            "structures"], rows))
    if metrics.get("bands"):
        b = metrics["bands"]
        windows = [k.split(".")[1] for k in b if k.startswith("grid.") and k.endswith(".raw")]
        rows = []
        for kset in ("grid", "path"):
            for w in windows:
                r, al = b[f"{kset}.{w}.raw"], b[f"{kset}.{w}.aligned"]
                label = "occupied bands" if w == "occupied" else f"E_F +- {w[1:]} eV"
                rows.append([f"{kset}: {label}", _f(r["mean"]), _f(al["mean"]), _f(r.get("pooled")),
                             _f(al.get("pooled")), str(r["n_structures"])])
        s = metrics["settings"]["bands"]
        tables.append((f"Band energies (meV), {s['kgrid'][0]}x{s['kgrid'][1]}x{s['kgrid'][2]} grid and high-symmetry "
                       "path, reference S", ["k-points: window", "raw", "aligned", "raw (pooled)", "aligned (pooled)",
                                              "structures"], rows))
        rows = []
        for name in ("gap_error", "gap_error_insulators", "soc_splitting_error",
                     *(k for k in b if k.startswith("ghost_states."))):
            e = b[name]
            rows.append([name, _f(e["mean"]), _f(e["max"]), e["unit"], str(e["n_structures"])])
        tables.append(("Gaps, SOC splitting, ghost states", ["metric", "mean", "max", "unit", "structures"], rows))
    return tables


def rich_tables(metrics: dict) -> list:
    """The summary tables of :func:`summary_tables` as rich Tables (for terminals)."""
    from rich.table import Table

    out = []
    for title, headers, rows in summary_tables(metrics):
        t = Table(title=title, title_justify="left")
        for k, h in enumerate(headers):
            t.add_column(h, justify="left" if k == 0 else "right")
        for r in rows:
            t.add_row(*map(str, r))
        out.append(t)
    return out


def first_window(metrics: dict) -> str:
    """Name ('w1', ...) of the narrowest band window of an evaluation ('w1' if bands were off)."""
    s = metrics["settings"].get("bands") or {}
    return f"w{s['windows_ev'][0]:g}" if s.get("windows_ev") else "w1"


def _q(entry: dict, q: str, kind: str = "mean"):
    return (entry.get(q) or {}).get(kind)


# ----------------------------------------------------------------------------------- plots
def _plot_parity(details: dict, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    ref, pred = details["ref"], details["pred"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.6))
    if len(ref):
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(ref, pred, s=2, alpha=0.3, color="C0", rasterized=True)
        err = np.abs(pred - ref) * 1000
        err = err[err > 0]
        if len(err):
            bx.hist(np.log10(err), bins=60, color="C0")
    ax.set_xlabel("reference Re H (eV)")
    ax.set_ylabel("predicted Re H - mu* S (eV)")
    ax.set_title(title, fontsize=9)
    bx.set_xlabel("log10 |error| (meV)")
    bx.set_ylabel("entries (sample)")
    bx.set_title("distribution of the entry errors", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_heatmap(pairs: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    from ase.data import chemical_symbols
    from matplotlib.colors import LogNorm

    els = sorted({x for k in pairs for x in k.split("-")}, key=chemical_symbols.index)
    idx = {e: i for i, e in enumerate(els)}
    grid = np.full((len(els), len(els)), np.nan)
    for key, e in pairs.items():
        a, b = key.split("-")
        v = _q(e, "spin_diag_real")
        if v is not None:
            grid[idx[a], idx[b]] = grid[idx[b], idx[a]] = v
    size = max(4.0, 0.35 * len(els) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    finite = grid[np.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.001)) if len(finite) else None
    im = ax.imshow(np.where(grid > 0, grid, np.nan), cmap="viridis", norm=norm)
    ax.set_xticks(range(len(els)), els, rotation=90 if len(els) > 12 else 0)
    ax.set_yticks(range(len(els)), els)
    if len(els) <= 12:
        for i in range(len(els)):
            for j in range(len(els)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
    from matplotlib.ticker import LogFormatter

    fig.colorbar(im, ax=ax, label="spin-diag real MAE (meV)", format=LogFormatter(labelOnlyBase=False))
    ax.set_title("MAE by element pair (mean over structures)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_bands(b: dict, path: Path, title: str, window_ev: float = 3.0) -> None:
    import matplotlib.pyplot as plt

    x, ef = np.asarray(b["x"]), b["fermi_level"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for n in range(b["ref"].shape[1]):
        ax.plot(x, b["ref"][:, n] - ef, color="k", lw=1.0, label="reference" if n == 0 else None)
        ax.plot(x, b["pred"][:, n] - ef, color="C3", lw=0.9, ls="--", label="predicted (aligned)" if n == 0 else None)
    ticks = {}
    for i, lab in b["labels"]:
        ticks.setdefault(round(float(x[i]), 8), []).append(lab)
    for xv in ticks:
        ax.axvline(xv, color="0.8", lw=0.6)
    ax.set_xticks(list(ticks), ["|".join(dict.fromkeys(v)) for v in ticks.values()])
    ax.axhline(0.0, color="0.5", lw=0.6, ls=":")
    ax.set_xlim(x.min(), x.max())
    ax.set_ylim(-window_ev, window_ev)
    ax.set_ylabel("E - E_F (reference) (eV)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------- report
def check_report_folder(out_dir: str | os.PathLike) -> Path:
    """Refuse a report folder that exists and is neither empty nor an earlier report."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT_MARKER).is_file())):
        raise MaterialsHamError("exists and is not an earlier report folder; choose another --report folder",
                                subject=str(out))
    return out


def write_report(evaluation: Evaluation, out_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``metrics.json``, ``report.md``, ``report.html`` and the plots into ``out_dir``.

    Needs an :class:`Evaluation` made with ``details=True``.  The folder is built in a temporary
    folder and renamed into place; an existing folder is replaced only if it is empty or an
    earlier report (holds ``report.md``).
    """
    import matplotlib

    matplotlib.use("Agg")
    out = check_report_folder(out_dir)
    metrics, det = evaluation.metrics, evaluation.details
    with atomic_directory(out) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
        images = []
        head = metrics["headline"]
        if det.get("parity") is not None:
            _plot_parity(det["parity"], tmp / "parity.png",
                         f"{metrics['n_structures']} structures, spin-diag real MAE {_f(head['spin_diag_real_mev'])} meV")
            images.append(("Parity of matrix elements (scored spin-diagonal entries, sample)", "parity.png"))
        pairs = metrics["matrix"]["element_pair"]
        if pairs:
            _plot_heatmap(pairs, tmp / "element_pair_mae.png")
            images.append(("Error by element pair", "element_pair_mae.png"))
        w = first_window(metrics)
        rows = sorted((r for r in metrics["per_structure"] if r["matrix"]["spin_diag_real"] is not None),
                      key=lambda r: r["matrix"]["spin_diag_real"])
        if rows and det.get("bands"):
            picks = {"best": rows[0], "median": rows[len(rows) // 2], "worst": rows[-1]}
            for name, r in picks.items():
                b = det["bands"].get(r["id"])
                if b is None or not len(b["x"]):
                    continue
                w1 = (r.get("bands") or {}).get(f"path.{w}.aligned")
                _plot_bands(b, tmp / f"bands_{name}.png",
                            f"{name}: {r['id']} ({r['formula']}), H MAE {_f(r['matrix']['spin_diag_real'])} meV, "
                            f"bands E_F +-{w[1:]} eV {_f(w1)} meV")
                images.append((f"Bands of the {name} structure ({r['id']})", f"bands_{name}.png"))
        tables = summary_tables(metrics)
        per = [[r["id"], r["formula"], _f(r["matrix"]["spin_diag_real"]), _f(r["matrix"]["on-site.spin_diag_real"]),
                _f(r["mu_ev"] * 1000), _f((r.get("bands") or {}).get(f"grid.{w}.aligned")),
                _f((r.get("bands") or {}).get("gap_error"))] for r in rows[::-1]]
        tables.append(("Per structure (worst first)", ["id", "formula", "spin-diag real", "on-site", "mu* (meV)",
                                                       f"bands E_F +-{w[1:]} eV aligned", "gap error"], per))
        title = title or f"Materials-HAM-SOC evaluation: {metrics.get('model') or metrics['predictions']}"
        intro = (f"Dataset {metrics['dataset']['name']} (fingerprint {metrics['dataset']['fingerprint'][:12]}), split "
                 f"{metrics['split']}, {metrics['n_structures']} structures. All errors in meV; definitions in "
                 "the README (Scoring).")
        (tmp / "report.md").write_text(_markdown(title, intro, tables, images))
        (tmp / "report.html").write_text(_html(title, intro, tables, images))
    return out


def _markdown(title, intro, tables, images) -> str:
    lines = [f"# {title}", "", intro, ""]
    for caption, headers, rows in tables:
        lines += [f"## {caption}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        lines.append("")
    for caption, file in images:
        lines += [f"## {caption}", "", f"![{caption}]({file})", ""]
    return "\n".join(lines)


def _html(title, intro, tables, images) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "</style></head><body>", f"<h1>{e(title)}</h1><p>{e(intro)}</p>"]
    for caption, headers, rows in tables:
        parts.append(f"<h2>{e(caption)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for caption, file in images:
        parts.append(f"<h2>{e(caption)}</h2><img src='{e(file)}' alt='{e(caption)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
