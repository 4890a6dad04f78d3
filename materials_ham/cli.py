"""The ``materials-ham`` command line.  Thin: parse options, call the library, print.

Expected errors (:class:`~materials_ham.errors.MaterialsHamError`) become one line on
stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import FormatError, MaterialsHamError, ValidationFailed
from .generate import CLUSTER_WAIT, Staging

# Wide enough for the tables when output goes to a file or pipe (rich would assume 80 columns).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
errconsole = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def _engine_options(f):
    opts = [
        click.option("--engine", default="gpaw", show_default=True, help="DFT engine."),
        click.option("--basis", default="dzp", show_default=True, help="LCAO basis (GPAW: dzp, szp(dzp), ...)."),
        click.option("--kpt-density", type=float, default=2.0, show_default=True,
                     help="k-points per reciprocal Angstrom for the SCF mesh."),
        click.option("--kpts", nargs=3, type=int, default=None, help="Explicit SCF Monkhorst-Pack mesh (overrides density)."),
        click.option("--smearing", type=float, default=0.05, show_default=True, help="Fermi-Dirac width (eV)."),
        click.option("--h", "grid_spacing", type=float, default=0.2, show_default=True, help="Grid spacing (Angstrom)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _engine_settings(basis, kpt_density, kpts, smearing, grid_spacing) -> dict:
    return {"basis": basis, "kpt_density": kpt_density, "kpts": tuple(kpts) if kpts else None,
            "smearing": smearing, "h": grid_spacing}


def _make_engine(engine, **opts):
    from .engines import get_engine

    return get_engine(engine, **_engine_settings(**opts))


def render_report(report) -> Table:
    t = Table(title=f"validation of {report.subject}: {'PASSED' if report.passed else 'FAILED'}",
              title_justify="left")
    for col in ("check", "value", "unit", "tolerance", "verdict"):
        t.add_column(col, justify="right" if col in ("value", "tolerance") else "left")
    for r in report.results:
        cmp = "<=" if r.kind == "max" else ">"
        t.add_row(r.name, f"{r.value:.3e}", r.unit, f"{cmp} {r.tolerance:g}",
                  "[green]pass[/]" if r.passed else "[red]FAIL[/]")
    cond = next((r.detail.get("max_condition_number") for r in report.results
                 if r.name == "overlap_positive_definite"), None)
    if cond is not None:
        t.caption = f"max condition number of S(k): {cond:.3g}"
    return t


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="materials-ham")
def cli():
    """materials-ham: the Materials-HAM-SOC dataset, its engine, validator and scorer."""


@cli.command()
@click.argument("structure", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output sample file (.npz).")
@click.option("--no-validate", is_flag=True, help="Write the sample without running the physical checks.")
@_engine_options
def compute(structure, out, no_validate, **engine_opts):
    """Compute H, H0 (with SOC) and S of one STRUCTURE file (CIF, POSCAR, extxyz, ...)."""
    from .structures import read_structure
    from .validate import validate_sample

    crystal = read_structure(structure)
    engine = _make_engine(**engine_opts)
    with console.status(f"running {engine.name} on {structure.name} ({crystal.formula}, {len(crystal)} atoms)"):
        sample = engine.compute(crystal, provenance={"source": "file", "source_id": structure.name,
                                                     "path": str(structure)})
    console.print(f"{structure.name}: {sample.n_edges} edges, nao {sample.nao}, "
                  f"{sample.info['seconds_total']:.1f} s, E_F {sample.fermi_level:.3f} eV")
    if not no_validate:
        report = validate_sample(sample, subject=structure.name)
        console.print(render_report(report))
        if not report.passed:
            raise ValidationFailed("sample failed " + ", ".join(r.name for r in report.failures())
                                   + "; nothing written", subject=str(structure))
    sample.save(out)
    console.print(f"wrote {out}")


@cli.command()
@click.argument("samples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the reports as JSON.")
def validate(samples, json_out):
    """Run the physical checks on one or more sample files and print a report."""
    from .sample import load_sample
    from .validate import validate_sample

    reports = []
    for path in samples:
        report = validate_sample(load_sample(path), subject=str(path))
        console.print(render_report(report))
        for r in report.failures():
            console.print(f"  [red]{r.name}[/]: {r.description}; {r.detail}")
        reports.append(report)
    if json_out:
        _write_json(json_out, [r.to_dict() for r in reports])
    failed = [r.subject for r in reports if not r.passed]
    if failed:
        raise ValidationFailed(f"{len(failed)} of {len(reports)} sample(s) failed validation: {', '.join(failed)}")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True,
              help="Folder for the generated samples and the summary.")
@click.option("--structure", "names", multiple=True, help="Only these default structures (repeatable).")
@click.option("--workers", type=int, default=None, help="Parallel engine processes (default: number of cores).")
@_engine_options
def demo(out, names, workers, **engine_opts):
    """Generate, validate, pack and score the embedded default dataset (real GPAW runs)."""
    from .demo import run_demo

    summary = run_demo(out, names=names or None, engine=engine_opts.pop("engine"),
                       settings=_engine_settings(**engine_opts), workers=workers, console=console)
    if not summary["all_valid"]:
        raise ValidationFailed("some default samples failed generation or validation (see above)")


@cli.command()
@click.option("--preset", type=click.Choice(["mini", "small", "full"]), default="mini", show_default=True,
              help="mini: a cheap cover of the prototypes <= 5 atoms with every covered element twice; "
                   "small: all prototypes <= 5 atoms; full: all prototypes, polymorphs and enumeration.")
@click.option("--source", default="prototypes", show_default=True,
              help="prototypes, mp (Materials Project: needs MP_API_KEY and network), or a folder of CIF/POSCAR files.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Catalog file to write (.parquet).")
@click.option("--max-atoms", type=int, default=None, help="Largest cell kept (default: the preset's).")
@click.option("--split", type=click.Choice(["random", "ood-elements", "ood-prototype"]), default="random",
              show_default=True)
@click.option("--holdout-elements", default="", help="Comma-separated elements held out for --split ood-elements.")
@click.option("--holdout-prototypes", default="", help="Comma-separated prototypes held out for --split ood-prototype.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--engine", default="gpaw", show_default=True, help="Keep only structures this engine covers.")
@click.option("--no-dedup", is_flag=True, help="Keep structures StructureMatcher finds equivalent.")
@click.option("--skip-invalid", is_flag=True, help="Folder source: skip unreadable files instead of stopping.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write the curation report as JSON.")
def structures(preset, source, out, max_atoms, split, holdout_elements, holdout_prototypes, seed, engine, no_dedup,
               skip_invalid, report_path):
    """Curate a structure catalog (filters, deduplication, seeded splits) into a Parquet file."""
    from .engines import get_engine
    from .structures.curate import PRESETS, curate, write_catalog
    from .structures import sources

    p = PRESETS[preset]
    rejected: list = []
    if source == "prototypes":
        cands = sources.prototype_source(polymorphs=p.polymorphs, enumerate_binaries=p.enumerate_binaries,
                                         extended=p.extended)
    elif source == "mp":
        cands = sources.materials_project_source(max_atoms=max_atoms or p.max_atoms)
    else:
        cands = sources.folder_source(source, skip_invalid=skip_invalid, rejected=rejected)
    df, report = curate(cands, max_atoms=max_atoms or p.max_atoms, engine=get_engine(engine),
                        dedup=not no_dedup, split=split, seed=seed,
                        holdout_elements=[e for e in holdout_elements.split(",") if e],
                        holdout_prototypes=[e for e in holdout_prototypes.split(",") if e],
                        min_per_element=p.min_per_element if source == "prototypes" else 0,
                        cover=p.cover and source == "prototypes", progress=True)
    write_catalog(df, out)
    t = Table(title=f"catalog {out}: {len(df)} structures from {report.n_candidates} candidates", title_justify="left")
    for col in ("split", "structures", "atoms (min-max)", "elements"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for name in ("train", "val", "test"):
        sub = df[df["split"] == name]
        if len(sub):
            t.add_row(name, str(len(sub)), f"{sub.n_atoms.min()}-{sub.n_atoms.max()}",
                      str(len({e for els in sub.elements for e in els})))
    console.print(t)
    for reason, n in sorted(report.dropped.items()):
        if n:
            console.print(f"dropped {n}: {reason}")
    for path, why in rejected:
        console.print(f"[yellow]skipped[/] {path}: {why}")
    if report_path:
        _write_json(report_path, {**report.to_dict(), "rejected_files": rejected})


@cli.command()
@click.argument("catalog", type=click.Path(path_type=Path))
@click.option("--for", "dataset", type=click.Path(path_type=Path), required=True,
              help="The packed dataset to supplement (its structures are never chosen, nor equivalent ones).")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Supplement catalog to write (.parquet).")
@click.option("--min-per-element", type=click.IntRange(min=1), default=3, show_default=True,
              help="Training structures each element of the dataset should appear in, with the supplement.")
@click.option("--with", "existing", type=click.Path(path_type=Path), multiple=True,
              help="A packed supplement already made for DATASET (repeatable): its training structures count, and "
                   "none of its structures, nor equivalent ones, is picked again.")
@click.option("--skip-failed", "staging", type=click.Path(path_type=Path), multiple=True,
              help="The staging folder of an earlier `generate` run (repeatable): candidates that failed there "
                   "(engine or validation) are not picked again.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write the selection report as JSON.")
def supplement(catalog, dataset, out, min_per_element, existing, staging, report_path):
    """Pick a training supplement for DATASET from the candidate CATALOG (all split train).

    Generate and pack it like any catalog; train with it through the model's own option (for the
    NextHAM baseline: --extra-train).
    """
    from .store import open_store
    from .structures.curate import read_catalog, write_catalog
    from .structures.supplement import training_supplement

    cands = read_catalog(catalog)

    def structures(path):
        st = open_store(path)
        return [(sid, split, st.by_id(sid, matrices=()).crystal) for sid, split in zip(st.index["id"], st.index["split"])]

    failed = {}
    for path in staging:
        if not (Path(path) / "failed").is_dir():
            raise MaterialsHamError(f"{path} is not the staging folder of a `generate` run (no failed/ folder)")
        failed.update({sid: f"{rec.get('kind', '?')} in {path}: {rec.get('cause', '?')}"
                       for sid, rec in Staging(path).failed_records().items()})
    df, report = training_supplement(cands, structures(dataset), min_per_element=min_per_element,
                                     existing=[row for path in existing for row in structures(path)], failed=failed)
    if not len(df):
        raise MaterialsHamError(f"no structure of {catalog} is needed: every element of {dataset} already appears "
                                f"in {min_per_element} training structures, or no candidate has it")
    write_catalog(df, out)
    t = Table(title=f"supplement {out}: {len(df)} training structures from {report.n_candidates} candidates",
              title_justify="left")
    for col in ("elements of the dataset", f"in < {min_per_element} training structures: before", "after"):
        t.add_column(col, justify="right")
    short_before = sum(1 for el in report.elements if report.before[el] < min_per_element)
    t.add_row(str(len(report.elements)), str(short_before), str(len(report.short)))
    console.print(t)
    if report.short:
        console.print(f"still below {min_per_element} (no more candidates): "
                      + ", ".join(f"{el} ({report.after[el]})" for el in report.short))
    reasons = Counter("equivalent to a structure of the dataset" if r.startswith("equivalent") else
                      "failed in an earlier generation run" if r.startswith("failed before") else r
                      for r in report.dropped.values())
    for reason, n in sorted(reasons.items()):
        console.print(f"dropped {n}: {reason}")
    if report_path:
        _write_json(report_path, report.to_dict())


@cli.command()
@click.argument("catalog", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Staging folder (re-running with the same folder resumes).")
@click.option("--workers", type=int, default=None, help="Local workers (default: number of cores).")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler (tcp://host:8786).")
@click.option("--cluster", type=click.Choice(["local", "slurm", "pbs"]), default="local", show_default=True,
              help="slurm/pbs: dask workers in batch jobs (dask-jobqueue) submitted from this machine; the staging "
                   "folder and this Python environment must be on a filesystem the compute nodes share.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="SLURM/PBS: number of batch jobs (one single-threaded worker each).")
@click.option("--queue", default=None, help="SLURM partition / PBS queue.")
@click.option("--walltime", default="24:00:00", show_default=True, help="SLURM/PBS: wall time of each batch job.")
@click.option("--cluster-wait", type=click.FloatRange(min=0), default=CLUSTER_WAIT, show_default=True,
              help="SLURM/PBS: seconds to wait for the first job's worker to connect before giving up (0: no limit).")
@click.option("--timeout", type=float, default=3600, show_default=True, help="Per-structure time limit (s).")
@click.option("--memory-limit", type=float, default=6144, show_default=True,
              help="Per-structure memory limit (MiB). SLURM/PBS jobs request it + 2 GiB (at least 8 GiB).")
@click.option("--retry-failed", is_flag=True, help="Try again the structures that failed before.")
@click.option("--id", "ids", multiple=True, help="Only these catalog ids (repeatable).")
@_engine_options
def generate(catalog, out, workers, scheduler, cluster, jobs, queue, walltime, cluster_wait, timeout, memory_limit,
             retry_failed, ids, engine, basis, kpt_density, kpts, smearing, grid_spacing):
    """Run the engine on every structure of CATALOG into a staging folder (resumable; dask)."""
    from .generate import Limits, generate as run

    settings = _engine_settings(basis, kpt_density, kpts, smearing, grid_spacing)
    cluster_options = {"walltime": walltime, **({"queue": queue} if queue else {})}
    summary = run(catalog, out, engine=engine, settings=settings, limits=Limits(timeout, memory_limit),
                  workers=workers, scheduler=scheduler, cluster=cluster, jobs=jobs, cluster_options=cluster_options,
                  cluster_wait=cluster_wait, retry_failed=retry_failed, ids=list(ids) or None, log=console.print)
    console.print(f"{summary.done} computed, {summary.failed} failed, {summary.skipped_done} already done "
                  f"of {summary.total} in {summary.wall_seconds:.0f} s; staging folder {out}")
    if summary.failures:
        t = Table(title="failures", title_justify="left")
        for col in ("id", "kind", "cause"):
            t.add_column(col)
        for sid, f in summary.failures.items():
            t.add_row(sid, f["kind"], f["cause"])
        console.print(t)


@cli.command()
@click.argument("staging", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Dataset folder to create.")
@click.option("--shard-mib", type=float, default=1024, show_default=True,
              help="Target shard size (MiB of raw data; ~0.1 of it on disk).")
@click.option("--name", default="Materials-HAM-SOC", show_default=True, help="Dataset name (card title).")
@click.option("--version", "dataset_version", default="", help="Dataset version recorded in the store.")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset folder.")
def pack(staging, out, shard_mib, name, dataset_version, overwrite):
    """Pack a staging folder into a Zarr v3 dataset (+ Parquet index, manifest, dataset card)."""
    from .store import pack as run_pack, verify_dataset
    from .store.card import write_card

    attrs = {"dataset_name": name, **({"dataset_version": dataset_version} if dataset_version else {})}
    path = run_pack(staging, out, shard_mib=shard_mib, attrs=attrs, overwrite=overwrite)
    write_card(path, name=name)
    report = verify_dataset(path)
    files = [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    console.print(f"packed {report.n_structures} structures into {path}: {len(files)} files, "
                  f"{size / 2**20:.1f} MiB; verify: {'OK' if report.ok else 'FAILED'}")
    if not report.ok:
        raise FormatError(str(report))


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--deep", is_flag=True, help="Also decode every shard (slower).")
def verify(dataset, deep):
    """Check a dataset's manifest (sha256 of every file) and the store's structure."""
    from .store import verify_dataset

    report = verify_dataset(dataset, deep=deep)
    console.print(str(report), markup=False)
    if not report.ok:
        raise FormatError(f"{len(report.problems)} problem(s) found", subject=str(dataset))


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--name", default="Materials-HAM-SOC", show_default=True)
@click.option("--copy-to", type=click.Path(path_type=Path),
              help="Also copy the card (and its plot, beside it) here, e.g. ./dataset_card.md.")
def card(dataset, name, copy_to):
    """(Re)generate dataset_card.md and the element-coverage plot of a packed dataset."""
    from .store.card import write_card

    path = write_card(dataset, name=name)
    if copy_to:
        from .atomic import atomic_write
        from .store.card import COVERAGE_PLOT

        with atomic_write(copy_to, "w") as fh:
            fh.write(path.read_text())
        with atomic_write(copy_to.parent / COVERAGE_PLOT) as fh:  # the card links it by relative path
            fh.write((path.parent / COVERAGE_PLOT).read_bytes())
    console.print(f"wrote {path}" + (f" and {copy_to} (with {copy_to.parent / 'element_coverage.png'})"
                                     if copy_to else ""))


@cli.command("evaluate")
@click.argument("predictions", type=click.Path(path_type=Path))
@click.option("--dataset", default=None,
              help="Packed dataset folder (default: $MATERIALS_HAM_DATASET for the name materials-ham-soc).")
@click.option("--split", default="test", show_default=True, help="Split the predictions are for.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Metrics JSON to write (default: beside PREDICTIONS, <name>.metrics.json).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Also write a folder with report.md, report.html, metrics.json and plots.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Reference cache folder (default: $MATERIALS_HAM_CACHE or ~/.cache/materials-ham/evaluate).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the on-disk reference cache.")
@click.option("--no-bands", is_flag=True, help="Matrix metrics only (skip the eigenvalue solves).")
@click.option("--kgrid", nargs=3, type=int, default=None, help="Monkhorst-Pack grid of the band metrics [4 4 4].")
@click.option("--path-points", type=int, default=None, help="Points on the high-symmetry path [40].")
@click.option("--workers", type=int, default=None,
              help="Threads scoring structures in parallel [default: 2, or 1 on a 1-core machine].")
def evaluate_cmd(predictions, dataset, split, json_out, report_dir, cache_dir, no_cache, no_bands, kgrid, path_points,
                 workers):
    """Score a PREDICTIONS store (from materials_ham.write_predictions) against a dataset split."""
    import os

    from .evaluate import Evaluator
    from .evaluate.evaluator import EVALUATOR_NAME
    from .evaluate.report import check_report_folder, rich_tables, write_report

    if report_dir is not None:
        check_report_folder(report_dir)
    if not no_cache and cache_dir is None:
        cache_dir = Path(os.environ.get("MATERIALS_HAM_CACHE") or Path.home() / ".cache" / "materials-ham") / "evaluate"
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    ev = Evaluator(dataset or EVALUATOR_NAME, split=split, bands=not no_bands, kgrid=kgrid, path_points=path_points,
                   cache_dir=None if no_cache else cache_dir, workers=workers, progress=sys.stderr.isatty())
    result = ev.evaluate(predictions, details=report_dir is not None)
    m = result.metrics
    for t in rich_tables(m):
        console.print(t)
    h = m["headline"]
    console.print(f"headline: spin-diagonal real gauge MAE {h['spin_diag_real_mev']:.4f} meV over "
                  f"{m['n_structures']} structures ({m['seconds']:.1f} s)")
    if report_dir is not None:
        write_report(result, report_dir)
        console.print(f"wrote report {report_dir}")
    json_out = json_out or predictions.with_name(predictions.name.removesuffix(".zarr") + ".metrics.json")
    _write_json(json_out, m)
    console.print(f"wrote {json_out}")


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--repo", "repo_id", required=True, help="Hub dataset repo, ORG/NAME (created if absent).")
@click.option("--revision", default="main", show_default=True, help="Branch to commit to (created if absent).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--tag", default=None, help="Also tag the published commit (e.g. v1.0, the pinned release).")
@click.option("--token-env", default=None,
              help="Read the token from this environment variable (default: HF_TOKEN or `hf auth login`).")
def publish(dataset, repo_id, revision, private, tag, token_env):
    """Upload a packed DATASET (verified first) to the Hugging Face Hub; re-running resumes."""
    import os

    from .hub import publish as run_publish

    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise MaterialsHamError(f"environment variable {token_env} is not set or empty (--token-env)")
    result = run_publish(dataset, repo_id, revision=revision, private=private, token=token, tag=tag,
                         log=console.print)
    console.print(f"published {result.n_files} files ({result.n_bytes / 2**20:.1f} MiB) to {result.url} "
                  f"at commit {result.commit}" + (f", tagged {result.tag}" if result.tag else ""))


@cli.command()
@click.argument("name")
@click.option("--split", default=None, help="Only this split (default: all).")
@click.option("--revision", default=None, help="Branch, tag or commit (default: main; the official name: pinned).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Cache folder (default: $MATERIALS_HAM_CACHE or ~/.cache/materials-ham).")
def download(name, split, revision, cache_dir):
    """Download a Hub dataset (NAME: materials-ham-soc or ORG/NAME) into the cache; prints its folder."""
    from .hub import download as run_download

    view = run_download(name, split=split, revision=revision, cache_dir=cache_dir, progress=sys.stderr.isatty())
    console.print(f"{view.repo_id or name}"
                  + (f"@{view.commit} ({len(view.downloaded)} file(s) fetched)" if view.commit else "")
                  + (f", split {split}" if split else ""))
    click.echo(str(view.path))


def _scorer_options(f):
    opts = [
        click.option("--dataset", default=None,
                     help="Packed dataset folder the leaderboard scores against (default: $MATERIALS_HAM_DATASET)."),
        click.option("--leaderboard", "leaderboard_dir", type=click.Path(path_type=Path), default=Path("leaderboard"),
                     show_default=True, help="Leaderboard folder (holds submissions/)."),
        click.option("--predictions-root", type=click.Path(path_type=Path), default=None,
                     help="Folder holding <model_key>/seed-<s>.<split>.zarr (default: <leaderboard>/predictions)."),
        click.option("--kgrid", nargs=3, type=int, default=None, help="Band metrics grid [4 4 4]."),
        click.option("--path-points", type=int, default=None, help="Points on the high-symmetry path [40]."),
        click.option("--workers", type=int, default=1, show_default=True, help="Threads scoring structures."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="Reference cache (default: $MATERIALS_HAM_CACHE or ~/.cache/materials-ham/evaluate)."),
        click.option("--no-cache", is_flag=True, help="Do not use the on-disk reference cache."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _scorer_settings(kgrid, path_points, workers, cache_dir, no_cache):
    import os

    from .submissions import ScorerSettings

    if not no_cache and cache_dir is None:
        cache_dir = Path(os.environ.get("MATERIALS_HAM_CACHE") or Path.home() / ".cache" / "materials-ham") / "evaluate"
    return ScorerSettings(kgrid=tuple(kgrid) if kgrid else None, path_points=path_points, workers=workers,
                          cache_dir=None if no_cache else cache_dir, progress=sys.stderr.isatty())


@cli.command()
@click.argument("predictions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--metadata", type=click.Path(path_type=Path), required=True,
              help="The model's metadata (YAML, schema: leaderboard/submission.schema.json).")
@click.option("--val", "val_predictions", multiple=True, type=click.Path(path_type=Path),
              help="Validation-split predictions of the same runs, one per seed in the order of 'seeds' (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace an existing entry with the same model_key.")
@_scorer_options
def submit(predictions, metadata, val_predictions, overwrite, dataset, leaderboard_dir, predictions_root, kgrid,
           path_points, workers, cache_dir, no_cache):
    """Score PREDICTIONS (one test store per seed) and write leaderboard/submissions/<model_key>/."""
    from .evaluate.evaluator import EVALUATOR_NAME
    from .submissions import submit as run_submit

    result = run_submit(predictions, metadata, dataset or EVALUATOR_NAME, val_predictions=val_predictions,
                        leaderboard=leaderboard_dir, predictions_root=predictions_root, overwrite=overwrite,
                        scorer=_scorer_settings(kgrid, path_points, workers, cache_dir, no_cache), log=console.print)
    h = result.metrics["aggregate"]["test"]["headline"]["spin_diag_real_mev"]
    console.print(f"headline: spin-diagonal real gauge MAE {h['mean']:.4f}"
                  + (f" ± {h['std']:.4f}" if h["std"] is not None else "") + f" meV over {h['n']} seed(s)")
    console.print(f"wrote {result.submission} (predictions in {result.predictions})")


@cli.group("leaderboard")
def leaderboard_group():
    """The leaderboard: trusted re-scoring of every submission and the rendered table."""


@leaderboard_group.command("build")
@_scorer_options
def leaderboard_build(dataset, leaderboard_dir, predictions_root, kgrid, path_points, workers, cache_dir, no_cache):
    """Re-score every submission (checksums first) and render README.md and index.html."""
    from .evaluate.evaluator import EVALUATOR_NAME
    from .submissions import build as run_build

    result = run_build(leaderboard_dir, dataset or EVALUATOR_NAME, predictions_root=predictions_root,
                       scorer=_scorer_settings(kgrid, path_points, workers, cache_dir, no_cache), log=console.print)
    for i, e in enumerate(result.entries, 1):
        h = e.value("headline", "spin_diag_real_mev")
        console.print(f"{i}. {e.meta.model_name} ({e.key}): {h['mean']:.4f} meV, verified")
    console.print("wrote " + ", ".join(str(p) for p in result.written))


# ----------------------------------------------------------------------- convert (formats/)
@cli.group("convert")
def convert_group():
    """Import ABACUS / DeePTB / DeepH data as samples, export samples to DeepH (see README, Interoperability)."""


def _save_imported(sample, out: Path, no_validate: bool, subject: str) -> None:
    from .formats.common import engine_band_errors
    from .validate import validate_sample

    h0 = "present" if sample.info.get("h0_available", True) else "absent (stored as zeros)"
    console.print(f"{subject}: {sample.crystal.formula}, {sample.n_atoms} atoms, nao {sample.nao}, {sample.n_edges} edges, "
                  f"E_F {sample.fermi_level:.4f} eV, H0 {h0}; {sample.engine.get('spin', '')}")
    for rec in engine_band_errors(sample):
        console.print(f"  engine bands ({rec['source']}, {rec['n_kpoints']} k, lowest {rec['n_bands']}): "
                      f"max |diff| {rec['max_mev']:.4f} meV, mean {rec['mean_mev']:.4f} meV")
    if not no_validate:
        report = validate_sample(sample, subject=subject)
        console.print(render_report(report))
        if not report.passed:
            raise ValidationFailed("imported sample failed " + ", ".join(r.name for r in report.failures())
                                   + "; nothing written (--no-validate writes it anyway)", subject=subject)
    sample.save(out)
    console.print(f"wrote {out}")


@convert_group.command("abacus")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Sample file to write (.npz).")
@click.option("--h0", "h0_dir", type=click.Path(path_type=Path), default=None,
              help="Second ABACUS run (same structure/basis) whose H is H0, e.g. the get_hs run.")
@click.option("--no-log", is_flag=True, help="Ignore running_*.log (basis from the .orb files; Fermi level unknown).")
@click.option("--no-validate", is_flag=True, help="Write the sample without running the physical checks.")
def convert_abacus(run_dir, out, h0_dir, no_log, no_validate):
    """Import a finished ABACUS LCAO run (out_mat_hs2 1; old or new CSR, nspin 1 or 4)."""
    from .formats import import_abacus

    _save_imported(import_abacus(run_dir, h0_dir=h0_dir, no_log=no_log), out, no_validate, str(run_dir))


@convert_group.command("deeptb")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Sample file to write (.npz).")
@click.option("--frame", default="0", show_default=True, help="Frame (h5 group) to import.")
@click.option("--no-validate", is_flag=True, help="Write the sample without running the physical checks.")
def convert_deeptb(folder, out, frame, no_validate):
    """Import DeePTB/dftio h5 files (hamiltonians*.h5, overlaps.h5) lying in their ABACUS run folder."""
    from .formats import import_deeptb

    _save_imported(import_deeptb(folder, frame=frame), out, no_validate, str(folder))


@convert_group.command("deeph-import")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Sample file to write (.npz).")
@click.option("--layout", type=click.Choice(["auto", "new", "legacy"]), default="auto", show_default=True)
@click.option("--no-validate", is_flag=True, help="Write the sample without running the physical checks.")
def convert_deeph_import(folder, out, layout, no_validate):
    """Import one DeepH structure folder (DeepH-dock "new" or legacy layout)."""
    from .formats import import_deeph

    _save_imported(import_deeph(folder, None if layout == "auto" else layout), out, no_validate, str(folder))


@convert_group.command("deeph-export")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Folder to write (replaced atomically).")
@click.option("--layout", type=click.Choice(["new", "legacy"]), default="new", show_default=True)
@click.option("--split", default="test", show_default=True, help="Dataset split to export (SOURCE a dataset).")
def convert_deeph_export(source, out, layout, split):
    """Export a sample (.npz) or a dataset split (packed dataset folder) to DeepH folders."""
    from .formats import export_deeph, export_deeph_dataset
    from .sample import load_sample

    if source.is_file():
        export_deeph(load_sample(source), out, layout)
        console.print(f"wrote {out} (DeepH {layout} layout)")
    else:
        if not source.is_dir():
            raise FormatError("no such sample file or dataset folder", subject=str(source))
        done = export_deeph_dataset(source, out, split=split, layout=layout, progress=sys.stderr.isatty())
        console.print(f"wrote {len(done)} structure folder(s) of split {split} to {out} (DeepH {layout} layout)")


def _write_json(path: Path, data) -> None:
    from .atomic import atomic_write

    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2, default=float)


def main(argv=None):
    """Entry point: run the click group, turning expected errors into one-line messages."""
    # A codec error inside zarr (a damaged shard, reported as one FormatError line) can leave its
    # async read tasks pending; asyncio would log "Task was destroyed but it is pending!" when they
    # are collected. That is noise to a command-line user, so asyncio's own log is silenced here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        cli.main(args=argv, standalone_mode=False)
    except MaterialsHamError as err:
        errconsole.print(f"[red]error[/]: {err}", markup=True, soft_wrap=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        errconsole.print("aborted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
