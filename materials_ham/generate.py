"""Generation at scale: run the engine on every structure of a catalog with dask.distributed.

Staging layout (``generate CATALOG --out DIR``; what :func:`materials_ham.store.pack` reads)::

    DIR/catalog.parquet      the catalog the run works from
    DIR/run.json             engine name and settings (a resumed run must use the same)
    DIR/samples/<id>.npz     finished samples (Sample.save, written atomically)
    DIR/done/<id>.json       {"id", "sample", "sha256", "seconds", "peak_rss_mib", "validation", "passed"}
    DIR/failed/<id>.json     {"id", "kind", "cause", "seconds", ...}   kind: engine | validation |
                             timeout | memory | crash | structure
    DIR/rejected/<id>.npz    samples that failed validation, kept for inspection
    DIR/logs/<id>.log        the engine process's stderr
    DIR/logs/batch/          SLURM/PBS: the job script and the batch jobs' output

Each structure runs in its own process, started by a dask task: the task enforces the
per-structure time and memory limits (killing the process), and the process writes its sample
and then its ``done`` record, each atomically, so that a record always points at a complete,
checksummed sample.  A re-run skips every id with a valid ``done`` record (and, unless
``retry_failed``, every id with a ``failed`` record); killing the run at any moment loses at
most the structures in flight.  The engine process dies with the task that started it
(``PR_SET_PDEATHSIG`` on Linux), so no orphan keeps computing after a kill.

Clusters: a ``LocalCluster`` with one single-threaded worker per core by default, an existing
scheduler by address, or SLURM/PBS through ``dask-jobqueue`` (the staging folder and the Python
environment must then be on a filesystem the compute nodes share; see :func:`make_client`).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import atomic_write, file_sha256
from .errors import FormatError, MaterialsHamError

#: Environment of each engine process: one BLAS/OpenMP thread (fastest per core for GPAW LCAO).
ENGINE_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FAILURE_KINDS = ("structure", "engine", "validation", "timeout", "memory", "crash")


@dataclass
class Limits:
    """Per-structure limits: wall seconds and resident memory (MiB) of the engine process."""

    seconds: float = 3600.0
    memory_mib: float = 6144.0


@dataclass
class GenerationSummary:
    total: int = 0
    skipped_done: int = 0
    skipped_failed: int = 0
    done: int = 0
    failed: int = 0
    wall_seconds: float = 0.0
    failures: dict = field(default_factory=dict)   # id -> {"kind", "cause"}

    def to_dict(self) -> dict:
        return asdict(self)


def _write_json(path: Path, data) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=1, default=float)


# ------------------------------------------------------------------------- staging state


class Staging:
    """The staging folder of a generation run (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.parquet"

    @property
    def run(self) -> Path:
        return self.root / "run.json"

    def sample(self, sid: str) -> Path:
        return self.root / "samples" / f"{sid}.npz"

    def done(self, sid: str) -> Path:
        return self.root / "done" / f"{sid}.json"

    def failed(self, sid: str) -> Path:
        return self.root / "failed" / f"{sid}.json"

    def log(self, sid: str) -> Path:
        return self.root / "logs" / f"{sid}.log"

    def is_done(self, sid: str) -> bool:
        """A done record that parses and whose sample exists (its checksum is checked by pack/verify)."""
        rec = self.done(sid)
        if not rec.is_file():
            return False
        try:
            data = json.loads(rec.read_text())
        except ValueError:
            return False
        return bool(data.get("passed")) and (self.root / data.get("sample", "")).is_file()

    def done_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "done").glob("*.json"))

    def failed_records(self) -> dict[str, dict]:
        out = {}
        for p in sorted((self.root / "failed").glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except ValueError:
                out[p.stem] = {"kind": "crash", "cause": "unreadable failure record"}
        return out

    def prepare(self, catalog, run: dict) -> None:
        """Create the folders; record the catalog and the run settings, refusing a mismatch."""
        for sub in ("samples", "done", "failed", "rejected", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            for stale in (self.root / sub).glob(".*.tmp"):  # left by a run killed mid-write
                stale.unlink(missing_ok=True)
        run_path = self.run
        if run_path.is_file():
            old = json.loads(run_path.read_text())
            if old.get("engine") != json.loads(json.dumps(run["engine"], default=float)):
                raise MaterialsHamError(
                    f"{self.root} was generated with other engine settings ({old.get('engine')}); "
                    "use a new --out folder, or the same settings to resume", subject=str(run_path))
        else:
            _write_json(run_path, run)
        cat_path = self.catalog
        if cat_path.is_file():
            from .structures.curate import read_catalog

            old = read_catalog(cat_path).set_index("id")
            common = old.index.intersection(catalog["id"])
            new = catalog.set_index("id")
            for sid in common:
                for col in ("numbers", "positions", "cell"):
                    if list(old.at[sid, col]) != list(new.at[sid, col]):
                        raise MaterialsHamError(
                            f"structure {sid!r} differs from the one this folder was generated from; "
                            "use a new --out folder", subject=str(cat_path))
            if set(old.index) - set(new.index):
                import pandas as pd

                catalog = pd.concat([old.reset_index()[~old.index.isin(new.index)], catalog], ignore_index=True)
        from .structures.curate import write_catalog

        write_catalog(catalog, cat_path)


# ----------------------------------------------------------------- one structure, one process


def run_structure(job: dict) -> dict:
    """Run the engine on one structure in a child process under the job's limits (a dask task).

    ``job`` = {"id", "staging", "engine", "settings", "limits": {"seconds", "memory_mib"}, "row"}.
    Returns {"id", "status": "done" | "failed", "kind", "cause", "seconds"}; a failure is also
    recorded in ``failed/<id>.json``.  Success is recorded by the child itself.
    """
    import psutil

    staging = Staging(job["staging"])
    sid = job["id"]
    staging.failed(sid).unlink(missing_ok=True)
    env = {**os.environ, **ENGINE_ENV}
    t0 = time.perf_counter()
    log = staging.log(sid)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "materials_ham.generate", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        proc.stdin.write(json.dumps(job, default=float).encode())
        proc.stdin.close()
        kind = cause = None
        peak = 0.0
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss / 2**20
            except psutil.Error:
                rss = 0.0
            peak = max(peak, rss)
            elapsed = time.perf_counter() - t0
            if elapsed > job["limits"]["seconds"]:
                kind, cause = "timeout", f"exceeded the time limit of {job['limits']['seconds']:.0f} s"
            elif rss > job["limits"]["memory_mib"]:
                kind, cause = "memory", (f"exceeded the memory limit ({rss:.0f} MiB > "
                                         f"{job['limits']['memory_mib']:.0f} MiB)")
            if kind:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.2)
        out = proc.stdout.read().decode(errors="replace").strip().splitlines()
    seconds = time.perf_counter() - t0
    result = None
    if kind is None:
        try:
            result = json.loads(out[-1]) if out else None
        except ValueError:
            result = None
        if result is None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            kind = "crash"
            cause = f"engine process exited with code {proc.returncode}" + (f": {tail[0][:300]}" if tail else "")
        elif result["status"] == "failed":
            kind, cause = result["kind"], result["cause"]
    if kind is not None:
        _write_json(staging.failed(sid), {"id": sid, "kind": kind, "cause": cause, "seconds": seconds,
                                          "peak_rss_mib": peak, **(result or {}).get("extra", {})})
        return {"id": sid, "status": "failed", "kind": kind, "cause": cause, "seconds": seconds}
    return {"id": sid, "status": "done", "kind": None, "cause": None, "seconds": seconds}


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the thread that started it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(parent_pid: int) -> None:
    """Body of the engine process: compute, validate, write sample then done record."""
    _die_with_parent(parent_pid)
    job = json.loads(sys.stdin.read())
    staging = Staging(job["staging"])
    sid = job["id"]

    def report(status, kind=None, cause=None, **extra):
        print(json.dumps({"status": status, "kind": kind, "cause": cause, "extra": extra}, default=float), flush=True)

    from .engines import get_engine
    from .errors import EngineError, StructureError
    from .structures.curate import catalog_crystal, catalog_provenance
    from .validate import validate_sample

    t0 = time.perf_counter()
    try:
        crystal = catalog_crystal(job["row"])
        engine = get_engine(job["engine"], **job["settings"])
        sample = engine.compute(crystal, provenance=catalog_provenance(job["row"]))
    except StructureError as err:
        return report("failed", "structure", str(err))
    except EngineError as err:
        return report("failed", "engine", str(err))
    checks = validate_sample(sample, subject=sid)
    numbers = checks.numbers()
    if not checks.passed:
        sample.save(staging.root / "rejected" / f"{sid}.npz")
        return report("failed", "validation", "failed " + ", ".join(
            f"{r.name} ({r.value:.3g} {r.unit}, tolerance {r.tolerance:g})" for r in checks.failures()),
            validation=numbers)
    path = staging.sample(sid)
    sample.save(path)
    _write_json(staging.done(sid), {
        "id": sid, "sample": path.relative_to(staging.root).as_posix(), "sha256": file_sha256(path),
        "seconds": time.perf_counter() - t0, "peak_rss_mib": float(sample.info.get("peak_rss_mib", 0.0)),
        "validation": numbers, "passed": True, "n_edges": sample.n_edges, "nao": sample.nao})
    report("done")


# ----------------------------------------------------------------------------- clusters


#: Seconds ``generate`` waits for the first SLURM/PBS job's dask worker to connect (0: no limit).
CLUSTER_WAIT = 1800.0
#: Batch systems: the dask-jobqueue cluster class, the submit command, the command that shows a job.
BATCH_SYSTEMS = {"slurm": ("SLURMCluster", "sbatch", "squeue -j"), "pbs": ("PBSCluster", "qsub", "qstat")}


def batch_job_memory(limits: Limits) -> str:
    """Memory of one SLURM/PBS job: the per-structure limit plus 2 GiB for the dask worker, at least 8 GiB."""
    return f"{max(8, math.ceil(limits.memory_mib / 1024) + 2)}GiB"


def make_client(*, workers: int | None = None, scheduler: str | None = None, cluster: str = "local",
                cluster_options: dict | None = None, jobs: int = 1, wait: float | None = CLUSTER_WAIT, log=print):
    """A dask Client: an existing ``scheduler`` address, a SLURM/PBS cluster, or a LocalCluster.

    Local: ``workers`` single-threaded workers (default: the number of cores) in this process —
    each task's work happens in its own engine process anyway.

    SLURM/PBS (``cluster="slurm"|"pbs"``): ``jobs`` batch jobs, each one single-threaded dask worker,
    submitted through dask-jobqueue from this machine (a login node).  The job script runs this
    interpreter (``sys.executable``, dask-jobqueue's default unless ``jobqueue.<kind>.python`` is
    configured), so the Python environment, like the staging folder, must be on a filesystem the
    compute nodes share.  ``cluster_options`` go to ``SLURMCluster``/``PBSCluster``
    (``queue``, ``walltime``, ``memory``, ``account``, ``log_directory``, ``job_extra_directives``,
    ``interface``, ...; anything not given comes from dask's ``jobqueue`` configuration); with a
    ``log_directory`` the job script is also written there.  Waits up to ``wait`` seconds (0 or None:
    no limit) for the first worker to connect.  A missing or failing submit command, or no worker
    in time, raises :class:`MaterialsHamError` after cancelling the jobs.  Close the client and its
    ``cluster`` when done (:func:`generate` does), which cancels the jobs.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except OSError as err:
            raise MaterialsHamError(f"cannot reach the dask scheduler at {scheduler}: {err}") from None
    if cluster in BATCH_SYSTEMS:
        return _batch_client(cluster, jobs, cluster_options or {}, wait, log)
    if cluster != "local":
        raise MaterialsHamError(f"unknown cluster kind {cluster!r}; choose local, slurm or pbs")
    n = workers or os.cpu_count() or 1
    lc = LocalCluster(n_workers=n, threads_per_worker=1, processes=False, dashboard_address=":0")
    return Client(lc)


def _batch_client(kind: str, jobs: int, options: dict, wait: float | None, log):
    """Submit ``jobs`` SLURM/PBS jobs and return a Client once one worker connected (see make_client)."""
    from dask.distributed import Client

    try:
        import dask_jobqueue
    except ImportError:
        raise MaterialsHamError("SLURM/PBS need dask-jobqueue: pip install 'materials-ham[scale]'") from None
    cls_name, submit, show = BATCH_SYSTEMS[kind]
    system = kind.upper()
    if shutil.which(submit) is None:
        raise MaterialsHamError(f"{submit} not found on PATH: --cluster {kind} submits {system} jobs, so it must "
                                f"run where {submit} works (a login node of the cluster)")
    opts = {"cores": 1, "processes": 1, "memory": "8GiB", "walltime": "24:00:00", **options}
    jc = getattr(dask_jobqueue, cls_name)(**opts)
    client = None
    try:
        script = output = ""
        if opts.get("log_directory"):
            path = Path(opts["log_directory"]) / f"{kind}-job.sh"
            with atomic_write(path, "w") as fh:
                fh.write(jc.job_script() + "\n")
            script, output = f"; job script: {path}", f" in {path.parent}"
        # What jc.scale(jobs=jobs) does, but submitting here and now: scale() submits in a background
        # callback, where a refused submission would only be logged and the run would wait for nothing.
        while len(jc.worker_spec) < jobs:
            jc.worker_spec.update(jc.new_worker_spec())
        try:
            jc.sync(jc._correct_state)
        except (RuntimeError, ValueError) as err:
            from distributed.core import Status

            for job in jc.workers.values():
                if not getattr(job, "job_id", None):  # never submitted: nothing to cancel, let the cluster close
                    job.status = Status.failed
            text = str(err)
            detail = text.split("stderr:", 1)[1] if "stderr:" in text else text
            detail = "; ".join(line.strip() for line in detail.splitlines() if line.strip())
            raise MaterialsHamError(f"{system} refused the job ({submit} failed): {detail[:500]}{script}") from None
        ids = sorted((str(job.job_id) for job in jc.workers.values()), key=lambda j: (len(j), j))
        log(f"submitted {system} job{'s' if len(ids) > 1 else ''} {', '.join(ids)}; waiting "
            f"{f'up to {wait:g} s ' if wait else ''}for a dask worker to connect")
        client = Client(jc)
        try:
            client.wait_for_workers(1, timeout=wait or None)
        except TimeoutError:
            raise MaterialsHamError(
                f"no dask worker connected within {wait:g} s of submitting {system} job{'s' if len(ids) > 1 else ''} "
                f"{', '.join(ids)}, now cancelled: either the queue had not started it yet (raise --cluster-wait; "
                f"'{show} ID' shows a job's state) or its worker could not reach the scheduler at "
                f"{jc.scheduler_address} (see the job's output{output}; set 'interface' in "
                f"~/.config/dask/jobqueue.yaml){script}") from None
        return client
    except BaseException:
        if client is not None:
            client.close()
        jc.close()
        raise


def close_client(client) -> None:
    """Close a Client from :func:`make_client` and its cluster (cancelling SLURM/PBS jobs)."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# ---------------------------------------------------------------------------------- driver


def _cost(row) -> float:
    """Rough relative cost of a structure, to start the longest first (better packing)."""
    return float(len(row["numbers"])) ** 2 * (1.0 + sum(z > 18 for z in row["numbers"]) / len(row["numbers"]))


def generate(catalog, out, *, engine: str = "gpaw", settings: dict | None = None, limits: Limits | None = None,
             client=None, workers: int | None = None, scheduler: str | None = None, cluster: str = "local",
             jobs: int = 1, cluster_options: dict | None = None, cluster_wait: float | None = CLUSTER_WAIT,
             retry_failed: bool = False, ids=None, progress: bool = True, log=print) -> GenerationSummary:
    """Compute every structure of ``catalog`` (DataFrame or Parquet path) into the staging folder ``out``.

    Resumable: finished structures are skipped; previously failed ones too unless ``retry_failed``.
    ``client``: a dask Client (kept open).  Without one, :func:`make_client` makes one from
    ``workers``, ``scheduler``, ``cluster``, ``jobs``, ``cluster_options`` and ``cluster_wait`` once
    there is work to do, and closes it at the end (cancelling SLURM/PBS jobs).  SLURM/PBS jobs
    request :func:`batch_job_memory` and write their output and job script to ``out/logs/batch``
    unless ``cluster_options`` say otherwise; ``out`` must be on a filesystem the compute nodes share.
    """
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    from .engines import get_engine
    from .structures.curate import read_catalog

    if not hasattr(catalog, "columns"):
        catalog = read_catalog(catalog)
    if ids is not None:
        unknown = sorted(set(ids) - set(catalog["id"]))
        if unknown:
            raise FormatError(f"id(s) not in the catalog: {', '.join(unknown[:5])}")
        catalog = catalog[catalog["id"].isin(set(ids))]
    limits = limits or Limits()
    eng = get_engine(engine, **(settings or {}))
    staging = Staging(out)
    staging.prepare(catalog.reset_index(drop=True), {"engine": {"name": eng.name, "settings": eng.settings()}})
    summary = GenerationSummary(total=len(catalog))
    failed_before = staging.failed_records()
    todo = []
    for _, row in catalog.iterrows():
        sid = row["id"]
        if staging.is_done(sid):
            summary.skipped_done += 1
        elif sid in failed_before and not retry_failed:
            summary.skipped_failed += 1
        else:
            todo.append(row)
    if summary.skipped_done or summary.skipped_failed:
        log(f"resuming: {summary.skipped_done} already done, {summary.skipped_failed} failed before "
            f"({'skipped; --retry-failed to try again' if summary.skipped_failed else ''})".rstrip(" ()"))
    t0 = time.perf_counter()
    if todo:
        todo.sort(key=_cost, reverse=True)
        own_client = client is None
        if own_client:
            if cluster in BATCH_SYSTEMS and not scheduler:
                cluster_options = {"memory": batch_job_memory(limits),
                                   "log_directory": str(staging.root.resolve() / "logs" / "batch"),
                                   **(cluster_options or {})}
            client = make_client(workers=workers, scheduler=scheduler, cluster=cluster, jobs=jobs,
                                 cluster_options=cluster_options, wait=cluster_wait, log=log)
        try:
            jobs = [{"id": r["id"], "staging": str(staging.root.resolve()), "engine": eng.name,
                     "settings": eng.settings(), "limits": asdict(limits),
                     "row": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()}} for r in todo]
            futures = [client.submit(run_structure, job, key=f"generate-{job['id']}", pure=False,
                                     priority=len(jobs) - k) for k, job in enumerate(jobs)]
            bar = tqdm(total=len(futures), desc="generate", unit="structure", disable=not progress, smoothing=0.05)
            for fut in as_completed(futures):
                res = fut.result()
                if res["status"] == "done":
                    summary.done += 1
                else:
                    summary.failed += 1
                    summary.failures[res["id"]] = {"kind": res["kind"], "cause": res["cause"]}
                    bar.write(f"failed {res['id']} ({res['kind']}): {res['cause']}")
                bar.set_postfix(done=summary.done, failed=summary.failed, refresh=False)
                bar.update(1)
            bar.close()
        finally:
            if own_client:
                close_client(client)
    summary.wall_seconds = time.perf_counter() - t0
    _write_json(staging.root / "generation.json", {**summary.to_dict(), "limits": asdict(limits),
                                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return summary


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
