"""``materials-ham generate --cluster slurm|pbs`` against local stand-ins for the batch system.

There is no SLURM or PBS here, so the tests put fake ``sbatch``/``scancel`` and ``qsub``/``qdel``
commands first on ``PATH``. They are local stand-ins for the batch system: the submit command
copies the job script dask-jobqueue hands it, starts it at once in the background in a new
process group (like a job that left the queue immediately), and prints what the real command
prints (``Submitted batch job <id>`` / ``<id>.server``); the cancel command kills that process
group (SIGTERM, then SIGKILL). The fake SLURM job inherits the submitter's environment and
working directory (``sbatch``'s default ``--export=ALL``); the fake PBS job gets a bare
environment and starts in ``$HOME`` (``qsub`` without ``-V``), so the job script must not rely on
the submitter's shell.

The production path is unchanged: ``materials-ham generate`` (the real CLI in a subprocess, and
once the Python API in this process) -> ``make_client`` -> dask-jobqueue's ``SLURMCluster`` /
``PBSCluster`` -> the job script it writes -> ``dask worker`` started by that script ->
``run_structure`` -> the engine process -> the staging folder; only the batch system is fake.

Covered: the resource lines that reach the batch system (cores, memory, walltime, partition/queue,
log files), the worker connecting back to the scheduler, the staging output, the batch jobs being
cancelled when the run ends (no process left), and the failures (no submit command, a refused
submission, a job that never starts) becoming one clear message. Not covered: real queueing and
scheduling, accounting, node allocation, several nodes or hosts, a filesystem shared between
hosts, and the network between compute and login nodes.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from materials_ham import load_sample
from materials_ham.atomic import file_sha256
from materials_ham.generate import Staging
from materials_ham.structures import sources
from materials_ham.structures.curate import curate, write_catalog

pytest.importorskip("dask_jobqueue")

IDS = ("proto-He-fcc", "proto-Ne-fcc")  # the cheapest cells (about 1-6 s each with a 2x2x2 mesh)

# The fake submit command: one script for both systems, configured by the constants on top.
FAKE_SUBMIT = r'''#!{python}
"""Local stand-in for {submit}: start the job script now, in the background, in its own process group."""
import os, re, shutil, subprocess, sys
from pathlib import Path

STATE, SYSTEM = Path({state!r}), {system!r}
if os.environ.get("FAKE_BATCH_REFUSE"):  # what a real submit command does with a bad request
    print("{submit}: " + os.environ["FAKE_BATCH_REFUSE"], file=sys.stderr)
    sys.exit(1)
script = Path(sys.argv[-1])
n = 1
while True:  # a new job id, safe against concurrent submissions
    try:
        os.close(os.open(STATE / f"{{n}}.id", os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        n += 1
jid = str(n)
text = script.read_text()
shutil.copy(script, STATE / f"{{jid}}.sh")
if os.environ.get("FAKE_BATCH_HOLD"):  # the job stays queued forever
    print(f"Submitted batch job {{jid}}" if SYSTEM == "slurm" else f"{{jid}}.server")
    sys.exit(0)
if SYSTEM == "slurm":  # --export=ALL, runs in the submission directory; -o/-e with %J = job id
    env, cwd = {{**os.environ, "SLURM_JOB_ID": jid}}, os.getcwd()
    m_out = re.search(r"^#SBATCH -o (\S+)", text, re.M)
    m_err = re.search(r"^#SBATCH -e (\S+)", text, re.M)
    out = m_out.group(1).replace("%J", jid) if m_out else f"slurm-{{jid}}.out"
    err = m_err.group(1).replace("%J", jid) if m_err else out
else:  # no -V: a bare environment, runs in $HOME; -o/-e DIR/ -> DIR/<name>.o<id>
    env = {{"HOME": os.environ["HOME"], "PATH": "/usr/bin:/bin", "PBS_JOBID": f"{{jid}}.server",
            "PBS_O_WORKDIR": os.getcwd()}}
    cwd = os.environ["HOME"]
    name = (re.findall(r"^#PBS -N (\S+)", text, re.M) or ["job"])[0]
    m_out = re.search(r"^#PBS -o (\S+)", text, re.M)
    m_err = re.search(r"^#PBS -e (\S+)", text, re.M)
    out = (m_out.group(1) if m_out else cwd + "/") + f"{{name}}.o{{jid}}"
    err = (m_err.group(1) if m_err else cwd + "/") + f"{{name}}.e{{jid}}"
out, err = (Path(cwd) / out), (Path(cwd) / err)
with open(out, "ab") as fo, open(err, "ab") as fe:
    proc = subprocess.Popen(["bash", str(STATE / f"{{jid}}.sh")], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=fo, stderr=fe, start_new_session=True)
(STATE / f"{{jid}}.pid").write_text(str(proc.pid))
print(f"Submitted batch job {{jid}}" if SYSTEM == "slurm" else f"{{jid}}.server")
'''

# The fake cancel command: SIGTERM to the job's process group, SIGKILL after 10 s.
FAKE_CANCEL = r'''#!{python}
"""Local stand-in for {cancel}: kill the process group of each job id given."""
import os, signal, sys, time
from pathlib import Path

STATE = Path({state!r})
status = 0
for arg in sys.argv[1:]:
    jid = arg.split(".")[0]
    if not (STATE / f"{{jid}}.id").exists():
        print(f"{cancel}: error: invalid job id {{arg}}", file=sys.stderr)
        status = 1
        continue
    (STATE / f"{{jid}}.cancelled").touch()
    pid_file = STATE / f"{{jid}}.pid"
    if not pid_file.exists():  # still queued
        continue
    pgid = int(pid_file.read_text())
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        t0 = time.time()
        while time.time() - t0 < wait:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            continue
        break
sys.exit(status)
'''

COMMANDS = {"slurm": ("sbatch", "scancel"), "pbs": ("qsub", "qdel")}


class FakeBatch:
    """The fake commands of one batch system in ``tmp/bin``, their records in ``tmp/state``."""

    def __init__(self, tmp, system):
        self.system = system
        self.bin, self.state = tmp / "bin", tmp / "state"
        self.bin.mkdir()
        self.state.mkdir()
        submit, cancel = COMMANDS[system]
        for name, template in ((submit, FAKE_SUBMIT), (cancel, FAKE_CANCEL)):
            path = self.bin / name
            path.write_text(template.format(python=sys.executable, state=str(self.state), system=system,
                                            submit=submit, cancel=cancel))
            path.chmod(0o755)

    def jobs(self):
        return sorted(p.stem for p in self.state.glob("*.id"))

    def script(self, jid):
        return (self.state / f"{jid}.sh").read_text()

    def cancelled(self, jid):
        return (self.state / f"{jid}.cancelled").exists()

    def alive(self):
        """Processes still running in the process group of any started job."""
        groups = {int(p.read_text()) for p in self.state.glob("*.pid")}
        out = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) in groups and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
            except (ProcessLookupError, psutil.Error):
                pass
        return out

    def kill_all(self):
        for p in self.state.glob("*.pid"):
            try:
                os.killpg(int(p.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(params=["slurm", "pbs"])
def batch(request, tmp_path, monkeypatch):
    """Fake batch commands first on PATH (and a private $HOME, where a PBS job starts)."""
    fake = FakeBatch(tmp_path, request.param)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    try:
        yield fake
    finally:
        fake.kill_all()  # only a failed test leaves something to kill (asserted in the tests)


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    cands = [c for c in sources.prototype_source() if c.id in set(IDS)]
    df, _ = curate(cands, split="ood-elements", holdout_elements=["Ne"])
    return write_catalog(df, tmp_path_factory.mktemp("catalog") / "catalog.parquet")


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "materials_ham.cli", "generate", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def assert_no_job_left(fake, grace=10.0):
    t0 = time.time()
    while fake.alive() and time.time() - t0 < grace:
        time.sleep(0.2)
    assert not fake.alive(), f"a batch job outlived the run: {[p.cmdline() for p in fake.alive()]}"


def test_generate_through_the_batch_system(batch, catalog_path, tmp_path):
    staging = tmp_path / "staging"
    r = run_cli(catalog_path, "-o", staging, "--kpts", 2, 2, 2, "--cluster", batch.system, "--jobs", 1,
                "--queue", "testq", "--walltime", "01:30:00", "--memory-limit", 9000, "--cluster-wait", 120)
    assert r.returncode == 0, r.stderr
    assert "2 computed, 0 failed" in r.stdout

    # the job script the batch system received carries the run's settings
    assert batch.jobs() == ["1"], "expected exactly one batch job"
    script = batch.script("1")
    logs = staging.resolve() / "logs" / "batch"
    if batch.system == "slurm":
        for line in ("#SBATCH -p testq", "#SBATCH -n 1", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=11G",
                     "#SBATCH -t 01:30:00", f"#SBATCH -o {logs}/"):
            assert re.search(rf"^{re.escape(line)}", script, re.M), f"{line!r} not in the job script:\n{script}"
    else:
        for line in ("#PBS -q testq", "#PBS -l select=1:ncpus=1:mem=11GB", "#PBS -l walltime=01:30:00",
                     f"#PBS -o {logs}/"):
            assert re.search(rf"^{re.escape(line)}", script, re.M), f"{line!r} not in the job script:\n{script}"
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://" in script
    assert (logs / f"{batch.system}-job.sh").is_file()
    output = "dask-worker-1.err" if batch.system == "slurm" else "dask-worker.e1"  # where the worker logs
    assert "Starting Worker" in (logs / output).read_text(), "the job's output is not in the staging folder"

    # the run cancelled its job and nothing of it is left running
    assert batch.cancelled("1")
    assert_no_job_left(batch)

    # the staging output is the same as with the local cluster
    st = Staging(staging)
    assert st.done_ids() == sorted(IDS) and not st.failed_records()
    for sid in IDS:
        rec = json.loads(st.done(sid).read_text())
        assert rec["passed"] and rec["sha256"] == file_sha256(st.sample(sid))
        assert rec["validation"]["band_reproduction"] < 0.01
        sample = load_sample(st.sample(sid))
        assert sample.provenance["id"] == sid and sample.engine["settings"]["kpts"] == [2, 2, 2]
    assert json.loads((staging / "generation.json").read_text())["done"] == 2

    # a resumed run with nothing left to do submits no job
    r = run_cli(catalog_path, "-o", staging, "--kpts", 2, 2, 2, "--cluster", batch.system)
    assert r.returncode == 0, r.stderr
    assert "0 computed" in r.stdout and batch.jobs() == ["1"]


@pytest.mark.parametrize("batch", ["slurm"], indirect=True)
def test_the_python_api_cancels_its_jobs_before_returning(batch, catalog_path, tmp_path):
    """generate() in a long-lived process (a notebook): the jobs end when it returns, not at exit."""
    from materials_ham.generate import generate

    s = generate(catalog_path, tmp_path / "staging", settings={"kpts": (2, 2, 2)}, cluster="slurm", jobs=1,
                 cluster_options={"queue": "apiq"}, cluster_wait=120, ids=["proto-He-fcc"], progress=False)
    assert (s.done, s.failed) == (1, 0)
    assert batch.jobs() == ["1"] and "#SBATCH -p apiq" in batch.script("1")
    assert batch.cancelled("1")
    assert_no_job_left(batch, grace=2.0)


def one_line_error(r, *fragments):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    err = " ".join(r.stderr.split())  # rich wraps long lines
    for frag in fragments:
        assert frag in err, f"{frag!r} not in: {r.stderr}"


def test_a_job_that_never_starts_times_out_and_is_cancelled(batch, catalog_path, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BATCH_HOLD", "1")
    staging = tmp_path / "staging"
    t0 = time.perf_counter()
    r = run_cli(catalog_path, "-o", staging, "--kpts", 2, 2, 2, "--cluster", batch.system, "--cluster-wait", 3,
                timeout=120)
    assert time.perf_counter() - t0 < 60
    one_line_error(r, "no dask worker connected within 3 s", batch.system.upper(), "job 1",
                   str(staging.resolve() / "logs" / "batch" / f"{batch.system}-job.sh"))
    assert batch.jobs() == ["1"] and batch.cancelled("1")
    assert not Staging(staging).done_ids()


def test_a_refused_submission_is_one_message(batch, catalog_path, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BATCH_REFUSE", "error: invalid partition specified: nope")
    r = run_cli(catalog_path, "-o", tmp_path / "staging", "--cluster", batch.system, "--queue", "nope", timeout=120)
    one_line_error(r, "refused", COMMANDS[batch.system][0], "invalid partition specified: nope")
    assert not batch.jobs()


def test_no_batch_system_is_one_message(catalog_path, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))  # no sbatch, no qsub
    for system, submit in (("slurm", "sbatch"), ("pbs", "qsub")):
        r = run_cli(catalog_path, "-o", tmp_path / system, "--cluster", system, timeout=120)
        one_line_error(r, f"{submit} not found", system.upper())
