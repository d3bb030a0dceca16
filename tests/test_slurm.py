"""``run --executor slurm`` on a REAL single-node Slurm (tests/slurm_cluster.py: munged, MariaDB,
slurmdbd, slurmctld, slurmd from Debian's packages, in a temporary folder; ``make slurm``
installs them). One cluster serves every xdist worker and stops after the last one's tests.

The runs use tests/data/notebooks/quick, and for the requeue and cancel cases two notebooks
written here: ``01_first`` records at once; ``02_long`` sleeps for ten minutes the first time it
runs (it leaves a marker file), so its first attempt is always cut short, and records at once on
the next attempt.

The extraction on Slurm (``extract --executor slurm``) runs the shipped demo CLIP on a few dozen
synthetic images as one job of 2 gloo tasks, against ``torchrun`` with 2 processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import pytest

from unirepclip.cli import main

import slurm_cluster

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "tests" / "data" / "notebooks" / "quick"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """The test cluster's client environment (``SLURM_CONF``), set in ``os.environ`` for the
    session."""
    why = slurm_cluster.missing()
    if why:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            pytest.fail(f"{why} (`make test` installs them through the `slurm` target)")
        pytest.skip(why)
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common folder
    shared = slurm_cluster.SharedCluster(root, os.environ.get("PYTEST_XDIST_WORKER", "main"))
    env = shared.enter()
    old = os.environ.get("SLURM_CONF")
    os.environ.update(env)
    yield env
    shared.leave()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def _quick(out: Path, *extra: str) -> int:
    return main(["run", "--profile", str(QUICK / "quick.yaml"), "--notebooks-dir", str(QUICK),
                 "--output-dir", str(out), "--no-progress", "-q", "--sweep", "seed=0,1", *extra])


def _long_notebooks(folder: Path) -> Path:
    """``01_first`` and ``02_long`` (see the module's docstring) and their profile."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nbs = folder / "nb"
    nbs.mkdir(parents=True)
    for name, body in (("01_first", 'rec.record("first", {"seed": seed})'),
                       ("02_long", 'if not os.path.exists(marker):\n'
                                   '    open(marker, "w").close()\n    time.sleep(600)\n'
                                   'rec.record("long", {"seed": seed})')):
        params = new_code_cell('seed = 0\nmarker = ""\noutput_dir = "../reports/lab"\n'
                               'results_path = None  # type: Optional[str]')
        params.metadata["tags"] = ["parameters"]
        doc = new_notebook(cells=[params, new_code_cell(
            "import os, time\nfrom unirepclip.workbook.results import Recorder\n"
            "rec = Recorder(output_dir, results_path)"), new_code_cell(body)])
        doc.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}
        nbformat.write(doc, str(nbs / f"{name}.ipynb"))
    (folder / "long.yaml").write_text(f"description: a notebook cut short once\ncommon:\n"
                                      f"  marker: {folder / 'slept'}\n")
    return nbs


def _long(folder: Path, *extra: str) -> int:
    return main(["run", "--profile", str(folder / "long.yaml"), "--notebooks-dir",
                 str(folder / "nb"), "--output-dir", str(folder / "out"), "--no-progress", "-q",
                 "--sweep", "seed=0", "--executor", "slurm", *extra])


def _state(sweep: Path, slug: str) -> dict:
    try:
        return json.loads((sweep / "states" / f"{slug}.json").read_text())
    except (OSError, ValueError):
        return {}


def _until(what: str, ok, timeout: float = 150.0) -> None:
    end = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.5)


def _sacct_count() -> int:
    r = subprocess.run(["sacct", "-n", "-X", "-o", "JobID"], capture_output=True, text=True)
    return len(r.stdout.split())


def test_slurm_sweep_gives_the_local_figures_and_its_files_live_in_the_folder(slurm, tmp_path):
    assert _quick(tmp_path / "local") == 0
    assert _quick(tmp_path / "slurm", "--executor", "slurm", "--time-min", "5") == 0
    local, remote = tmp_path / "local" / "quick", tmp_path / "slurm" / "quick"
    for slug in ("seed-0", "seed-1"):
        want = json.loads((local / slug / "results.json").read_text())
        assert json.loads((remote / slug / "results.json").read_text()) == want
        assert want["fast"]["seed"] == int(slug[-1])  # the setting's own value reached it
        assert "01_fast: ok" in (remote / "logs" / f"{slug}.log").read_text()
        assert _state(remote, slug)["status"] == "ok"
    doc = json.loads((remote / "sweep.json").read_text())
    assert doc["status"] == "complete" and doc["executor"] == "slurm"
    assert [s["status"] for s in doc["settings"]] == ["ok", "ok"]
    job = doc["slurm"]["job_id"]
    assert (remote / "slurm" / f"{job}_submission.sh").is_file()  # submitit's files, in there
    assert sorted(p.name for p in (remote / "slurm").glob(f"{job}_*_0_log.out")) == [
        f"{job}_0_0_log.out", f"{job}_1_0_log.out"]
    assert not (remote / ".sweep.slurm-lock").exists()  # released by the last render
    assert "seed-1" in (remote / "index.html").read_text()


def test_bad_slurm_settings_are_one_line_before_anything_is_submitted(slurm, tmp_path, capsys):
    before = _sacct_count()
    assert _quick(tmp_path, "--executor", "slurm", "--partition", "nosuch") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: slurm partition 'nosuch': no such partition on this cluster "
                   f"(partitions: {slurm_cluster.PARTITION})"]
    assert _quick(tmp_path, "--executor", "slurm", "-p", "device=cuda") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gpus_per_task 0" in err[0] and "'cuda'" in err[0], err
    assert _quick(tmp_path, "--executor", "slurm", "--time-min", "0") == 2
    assert capsys.readouterr().err.strip() == "error: --time-min 0: must be at least 1"
    assert _sacct_count() == before and not (tmp_path / "quick" / "slurm").exists()


def test_a_task_cut_by_its_time_limit_is_requeued_and_resumes(slurm, tmp_path):
    _long_notebooks(tmp_path)
    sweep = tmp_path / "out" / "long"
    assert _long(tmp_path, "--time-min", "1", "--signal-delay-s", "20", "--max-requeue", "2",
                 "--detach") == 0
    _until("the requeue", lambda: _state(sweep, "seed-0").get("requeued"))
    job = _state(sweep, "seed-0")["job_id"]
    first = (sweep / "seed-0" / "results" / "01_first.json").stat().st_mtime_ns
    # Slurm holds a requeued job back for two minutes (reason BeginTime); the test lets it start
    # sooner, and gives the resumed attempt five minutes: under load (the other tests' kernels on 2
    # cores) it could otherwise be warned again before it ends. Not at once: slurmd refuses a
    # launch whose credential is from the same second as the requeue's revocation ("Job
    # credential revoked", the job then ends without running: seen in CI), so the hold is
    # released once it has lasted 3 s, and again each time it is seen after that.
    seen: list = []

    def released() -> bool:
        if _state(sweep, "seed-0").get("status") in ("ok", "failed"):
            return True
        held = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True,
                              text=True).stdout.split()
        if held == ["PENDING", "BeginTime"]:
            seen.append(time.monotonic())
            if seen[-1] - seen[0] >= 3.0:
                subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=5",
                                "StartTime=now"], check=True)
        return False

    _until("the end", released, timeout=240.0)
    assert _state(sweep, "seed-0")["status"] == "ok" and _state(sweep, "seed-0")["attempt"] == 1
    log = (sweep / "logs" / "seed-0.log").read_text()
    heads = [line for line in log.splitlines() if line.startswith("== attempt")]
    assert len(heads) == 2 and heads[1].startswith("== attempt 1 ") and heads[1].endswith(
        " --resume --wait") and "--resume" not in heads[0]
    manifest = json.loads((sweep / "seed-0" / "manifest.json").read_text())
    kept = {r["name"]: r.get("kept") for r in manifest["notebooks"]}
    # never rerun (given the same code: a commit between the attempts reruns it, by design)
    assert str(kept["01_first"]).startswith("kept by --resume"), manifest["notebooks"][0]
    assert (sweep / "seed-0" / "results" / "01_first.json").stat().st_mtime_ns == first
    assert json.loads((sweep / "seed-0" / "results.json").read_text())["long"] == {"seed": 0}
    assert main(["status", str(sweep)]) == 0
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "complete"



def test_a_cancelled_task_is_shown_failed_and_resume_finishes_it(slurm, tmp_path, capsys):
    from unirepclip.workbook.run.folder import folder_lock
    from unirepclip.workbook.run.shared_fs import write_state

    _long_notebooks(tmp_path)
    sweep = tmp_path / "out" / "long"
    assert _long(tmp_path, "--time-min", "5", "--detach") == 0
    _until("02_long to sleep", lambda: (tmp_path / "slept").exists())  # 01_first is done
    old = json.loads((sweep / "sweep.json").read_text())["slurm"]
    job = old["tasks"]["seed-0"]
    first = (sweep / "seed-0" / "results" / "01_first.json").stat().st_mtime_ns
    subprocess.run(["scancel", job], check=True)
    _until("the cancel", lambda: _state(sweep, "seed-0").get("status") == "failed")
    capsys.readouterr()
    assert main(["status", str(sweep)]) == 0  # it reports; it does not fail
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{sweep}: sweep failed (Slurm job array {job})", out
    assert out[1].startswith("  seed-0: failed (") and "`run --resume` finishes it" in out[1]
    assert json.loads((sweep / "sweep.json").read_text())["settings"][0]["status"] == "failed"

    # --resume with the same sweep submits again. Under load the cancelled attempt may still be
    # stopping (Slurm kills it KillWait later): here it holds the setting's folder and writes its
    # last state late, after the new submission's; neither may fail the resumed task.
    lock = folder_lock(sweep / "seed-0")
    lock.acquire()
    try:
        assert _long(tmp_path, "--time-min", "5", "--resume", "--detach") == 0
        _until("the resumed task to wait", lambda: "waiting for the run that holds" in (
            sweep / "logs" / "seed-0.log").read_text())
        write_state(sweep, "seed-0", status="failed", job_id=job, submission=old["submission"])

        def shown_running() -> bool:
            assert main(["status", str(sweep)]) == 0
            out = capsys.readouterr().out
            assert "seed-0: failed" not in out, out  # the old submission's state is not shown
            return "seed-0: running" in out
        # Slurm's accounting (sacct, through slurmdbd) may say RUNNING a moment after the task
        # started: until then the page says queued (seen in a full run under load)
        _until("status to show the resumed task running", shown_running, timeout=60.0)
    finally:
        lock.release()
    _until("the resumed task", lambda: json.loads((sweep / "sweep.json").read_text())[
        "status"] != "running")  # the task renders the page after it writes its state
    doc = json.loads((sweep / "sweep.json").read_text())
    assert doc["status"] == "complete" and doc["settings"][0]["status"] == "ok", doc
    assert doc["slurm"]["tasks"]["seed-0"] != job
    manifest = json.loads((sweep / "seed-0" / "manifest.json").read_text())
    kept = {r["name"]: r.get("kept") for r in manifest["notebooks"]}
    # never rerun (given the same code: a commit between the attempts reruns it, by design)
    assert str(kept["01_first"]).startswith("kept by --resume"), manifest["notebooks"]
    assert (sweep / "seed-0" / "results" / "01_first.json").stat().st_mtime_ns == first
    assert json.loads((sweep / "seed-0" / "results.json").read_text())["long"] == {"seed": 0}
    assert main(["status", str(sweep)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "  seed-0: ok"


def _extract_args(cache: Path) -> list:
    return ["--model", "UniRepLKNet-Demo", "--checkpoint", "demo", "--dataset", "synthetic",
            "--split", "test", "--n-images", "27", "--cache-dir", str(cache), "--batch-size", "8",
            "--backend", "gloo", "--no-progress"]


def _entry(cache: Path):
    from unirepclip.features import FeatureCache
    c = FeatureCache(cache)
    assert len(c.keys()) == 1, c.keys()
    return c.keys()[0], c.load(c.keys()[0])


def test_extraction_on_slurm_gives_torchrun_s_cache(slurm, tmp_path, capsys):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "unirepclip", "extract",
                           *_extract_args(tmp_path / "torchrun")],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    key, (want, _) = _entry(tmp_path / "torchrun")
    cache = tmp_path / "slurm"
    slurm_args = ["extract", "--executor", "slurm", "--nodes", "1", "--tasks-per-node", "2",
                  "--time-min", "5", *_extract_args(cache)]
    assert main(slurm_args) == 0
    assert "27 image features" in capsys.readouterr().out
    got_key, (got, meta) = _entry(cache)
    # Each rank extracts the same rows with one thread (SLURM_CPUS_PER_TASK=1, OMP_NUM_THREADS=1
    # under torchrun), the same batches and the same code: the arrays are bitwise equal.
    assert got_key == key and sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert [(s["start"], s["stop"]) for s in meta["distributed"]["shards"]] == [(0, 14), (14, 27)]
    assert meta["distributed"]["backend"] == "gloo" and not (cache / f"{key}.shards").exists()
    folder = tmp_path / "slurm.slurm"  # submitit's files, beside the cache
    assert len(list(folder.glob("*_submission.sh"))) == 1
    assert sorted(p.name.split("_", 1)[1] for p in folder.glob("*_log.out")) == [
        "0_log.out", "1_log.out"]


def test_bad_extraction_settings_are_one_line_before_anything_is_submitted(slurm, tmp_path,
                                                                           capsys):
    before = _sacct_count()
    base = ["extract", "--executor", "slurm", *_extract_args(tmp_path / "c")]
    assert main([*base, "--partition", "nosuch"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "unirepclip extract: error: slurm partition 'nosuch': no such partition on this cluster "
        f"(partitions: {slurm_cluster.PARTITION})"]
    assert main([*base, "--device", "cuda", "--gpus-per-node", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "unirepclip extract: error: --gpus-per-node 0 with --device cuda: each rank needs a GPU "
        "of its own; pass --gpus-per-node G (one process per GPU)"]
    assert main([*base, "--time-min", "0"]) == 2
    assert capsys.readouterr().err.strip() == "unirepclip extract: error: --time-min 0: must be " \
                                              "at least 1"
    assert main(["extract", *_extract_args(tmp_path / "c"), "--nodes", "2"]) == 2
    assert "--nodes: a Slurm setting, given without --executor slurm" in capsys.readouterr().err
    assert _sacct_count() == before and not (tmp_path / "c.slurm").exists()
