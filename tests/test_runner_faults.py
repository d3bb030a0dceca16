"""The runner under interruption, concurrency and bad parameters (issue 16).

Runs use tests/data/notebooks/quick (two cheap notebooks: ``01_fast`` records at once, ``02_slow``
sleeps ``sleep_s`` first, so a test can stop the run inside it). Signals are sent to this process
(the runner runs in the main thread here, as under the CLI); the concurrent run is a subprocess.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from unirepclip.cli import main
from unirepclip.workbook import params
from unirepclip.workbook import run as wrun
from unirepclip.workbook.run.provenance import stale_reason

DATA = Path(__file__).parent / "data"
QUICK = DATA / "notebooks" / "quick"
QPROFILE = QUICK / "quick.yaml"
REPO = Path(__file__).resolve().parents[1]


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _status(folder):
    return {r["name"]: r["status"] for r in _manifest(folder)["notebooks"]}


def _quick(out, *extra, **kw):
    return wrun.run(wrun.RunOptions(profile=QPROFILE, notebooks_dir=QUICK, output_dir=out,
                                    progress=False, quiet=True, overrides=tuple(extra), **kw))


def _no_sockets(*folders):
    for f in folders:
        left = [p.name for p in Path(f).iterdir() if p.name.startswith("kernel-")]
        assert not left, f"stale kernel files in {f}: {left}"


# -- bad parameters: refused before any notebook starts -------------------------------------------

@pytest.mark.parametrize("item,message", [
    ("n_mistakes=-1", "02_zeroshot: parameter 'n_mistakes' must be an int >= 0, got -1"),
    ("batch_size=0", "01_checkpoint: parameter 'batch_size' must be an int >= 1, got 0"),
    ("n_images=-1", "02_zeroshot: parameter 'n_images' must be an int >= 0, got -1"),
    ("sweep_sizes=[a,b]", "02_zeroshot: parameter 'sweep_sizes' must be a non-empty list of "
                          "ints >= 1, got ['a', 'b']"),
    ("sweep_sizes=[64,0]", "parameter 'sweep_sizes' must be a non-empty list of ints >= 1"),
    ("device=tpu", "03_erf: parameter 'device' must be one of cpu, cuda, auto (or cuda:N), "
                   "got 'tpu'"),
    ("precision=fp16", "05_linear_probe: parameter 'precision' must be one of fp32, bf16, "
                       "got 'fp16'"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_out_of_range_values_stop_the_run_before_any_notebook(item, message, dry, tmp_path,
                                                              monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("a notebook ran")

    monkeypatch.setattr(wrun.PapermillEngine, "execute", boom)
    monkeypatch.setattr(wrun.PapermillEngine, "open", boom)
    code = main(["run", "--notebooks-dir", str(REPO / "notebooks"), "--output-dir",
                 str(tmp_path / "out"), "-p", item, "-p", "seed=-3"] + (["--dry-run"] * dry))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "(from -p " in err
    assert "parameter 'seed' must be an int >= 0, got -3" in err  # every problem, one report
    assert not (tmp_path / "out").exists()


def test_in_range_values_pass_and_nan_is_refused(capsys):
    args = ["run", "--dry-run", "--notebooks-dir", str(REPO / "notebooks")]
    assert main(args + ["-p", "device=cuda:1", "-p", "n_mistakes=0", "-p", "sweep_sizes=[32]",
                        "-p", "precision=bf16"]) == 0
    capsys.readouterr()
    assert main(args + ["-p", "05_linear_probe.max_iter=.inf"]) == 2
    assert "expected int, got float inf" in capsys.readouterr().err
    assert params.NotebookParameter("x", "float", "0.5").check(float("nan")) is None  # a float by type,
    assert params.check_value(None, float("nan"), {}) == "must be a finite number, got nan"  # but


def test_every_number_or_list_a_shipped_notebook_declares_has_a_range():
    import ast
    missing = []
    for path in params.discover_notebooks(REPO / "notebooks"):
        for name, p in params.inspect_notebook(path).parameters.items():
            try:
                v = ast.literal_eval(p.default)
            except ValueError:
                continue
            numeric = isinstance(v, (int, float, list)) and not isinstance(v, bool)
            if numeric and name not in params.RESERVED and params.lookup(name) is None:
                missing.append(f"{path.stem}.{name}")
    assert not missing, f"parameters without a declared range (a layer's params.py): {missing}"


def test_relative_paths_resolve_where_they_were_written(tmp_path, monkeypatch):
    prof = tmp_path / "profiles" / "rel.yaml"
    prof.parent.mkdir()
    prof.write_text("common:\n  checkpoint: weights/ck.pt\n")
    nbs = [params.inspect_notebook(p) for p in params.discover_notebooks(QUICK)]
    monkeypatch.chdir(tmp_path)
    for f in ("profiles/weights/ck.pt", "mine.pt", "cfg/m.json"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}")
    got = params.resolve_parameters(nbs, params.load_profile(prof))
    assert got["01_fast"]["checkpoint"] == str(prof.parent / "weights" / "ck.pt")
    got = params.resolve_parameters(nbs, params.load_profile(prof), params.Request(
        ["checkpoint=mine.pt", "02_slow.checkpoint=demo", "model_name=cfg/m.json"]))
    assert got["01_fast"]["checkpoint"] == str(tmp_path / "mine.pt")  # the caller's folder
    assert got["02_slow"]["checkpoint"] == "demo"  # a name, not a file
    assert got["01_fast"]["model_name"] == str(tmp_path / "cfg" / "m.json")
    got = params.resolve_parameters(nbs, params.load_profile(prof), params.Request(
        ["checkpoint=hf-hub:org/repo", "model_name=UniRepLKNet-Demo"]))
    assert got["01_fast"]["checkpoint"] == "hf-hub:org/repo"
    assert got["01_fast"]["model_name"] == "UniRepLKNet-Demo"


# -- names become folders only after a check ------------------------------------------------------

def test_a_profile_named_dots_is_refused_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (tmp_path / "index.html").write_text("precious")
    dots = tmp_path / "...yaml"
    dots.write_text(QPROFILE.read_text())
    code = main(["run", "--notebooks-dir", str(QUICK), "--profile", str(dots),
                 "--output-dir", str(out)])
    assert code == 2 and "its name '..'" in capsys.readouterr().err
    assert (tmp_path / "index.html").read_text() == "precious" and not list(out.iterdir())


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "a\\b", "x\0y"])
def test_folder_names_that_are_not_one_folder(name):
    assert params.check_folder_name(name)
    with pytest.raises(params.ParameterError):
        wrun.report_folder("/tmp", name)


def test_the_report_folder_stays_under_output_dir(tmp_path):
    assert params.check_folder_name("ci") is None and params.check_folder_name("a.b") is None
    assert wrun.report_folder(tmp_path, "ci") == (tmp_path / "ci").resolve()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "escape").symlink_to(tmp_path)
    with pytest.raises(params.ParameterError, match="outside --output-dir"):
        wrun.report_folder(tmp_path / "out", "escape")


# -- the folder is locked while a run writes it ---------------------------------------------------

def _hold(folder, pid=4242, command=("python", "-m", "unirepclip", "run", "--only", "02")):
    from filelock import FileLock
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / wrun.LOCK_FILE))
    lock.acquire(timeout=0)
    (folder / wrun.HOLDER_FILE).write_text(json.dumps(
        {"pid": pid, "command": list(command), "started": "2030-01-01T00:00:00+00:00"}))
    return lock


def test_a_second_run_into_a_held_folder_refuses_naming_the_first(tmp_path, capsys):
    lock = _hold(tmp_path / "quick")
    try:
        code = main(["run", "--notebooks-dir", str(QUICK), "--profile", str(QPROFILE),
                     "--output-dir", str(tmp_path), "-q"])
        err = capsys.readouterr().err
        assert code == 2
        assert "in use by another run (pid 4242, started 2030-01-01T00:00:00+00:00: " \
               "python -m unirepclip run --only 02)" in err and "--wait" in err
        assert not (tmp_path / "quick" / "manifest.json").exists()  # nothing was touched
    finally:
        lock.release()


def test_wait_runs_once_the_holder_lets_go(tmp_path):
    held, released = threading.Event(), []

    def hold_then_let_go():  # another holder: its own thread, as filelock wants
        lock = _hold(tmp_path / "quick")
        held.set()
        time.sleep(2)
        released.append(time.time())
        lock.release()

    t = threading.Thread(target=hold_then_let_go)
    t.start()
    held.wait(30)
    res = _quick(tmp_path, "02_slow.seed=5", only=["02"], wait=True)
    t.join()
    assert res.ok and released
    m = _manifest(res.output_dir)
    assert m["status"] == "complete"
    started = m["notebooks"][-1]["started"]
    import datetime as dt
    assert dt.datetime.fromisoformat(started).timestamp() >= int(released[0])  # it waited
    assert json.loads((res.output_dir / "results.json").read_text())["slow"]["seed"] == 5


def test_a_manifest_left_running_by_a_dead_process_reads_interrupted(tmp_path):
    folder = tmp_path / "quick"
    folder.mkdir()
    m = {"status": "running", "notebooks": [{"name": "01_fast", "status": "ok"},
                                            {"name": "02_slow", "status": "running"},
                                            {"name": "03_x", "status": "pending"}]}
    (folder / "manifest.json").write_text(json.dumps(m))
    lock = _hold(folder)
    try:  # while someone holds the lock it is running ...
        assert wrun.read_manifest(folder)["status"] == "running"
    finally:
        lock.release()
    got = wrun.read_manifest(folder)  # ... once nobody does (SIGKILL, power loss), it is not
    assert got["status"] == "interrupted" and "no longer holds" in got["interrupted"]["reason"]
    assert [r["status"] for r in got["notebooks"]] == ["ok", "interrupted", "not run"]


def test_two_runs_from_one_notebooks_folder_and_a_refused_third(tmp_path):
    """A subprocess runs 02_slow into folder A; meanwhile this process runs 01_fast into folder
    B (both succeed: their kernels' files are private), and a run into A is refused."""
    a, b = tmp_path / "a", tmp_path / "b"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "unirepclip", "run", "--notebooks-dir", str(QUICK), "--profile",
         str(QPROFILE), "--output-dir", str(a), "--only", "02", "-p", "sleep_s=4", "-q",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 240
        while not wrun.folder_locked(a / "quick"):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        with pytest.raises(wrun.RunLocked, match=f"pid {proc.pid}"):
            _quick(a, only=["01"])
        res = _quick(b, only=["01"])
        assert res.ok
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _status(a / "quick") == {"02_slow": "ok"} and _status(b / "quick") == {"01_fast": "ok"}
    assert "Invalid Signature" not in err
    _no_sockets(QUICK, a / "quick", b / "quick")


# -- interruption, resume -------------------------------------------------------------------------

def _interrupt_in_02(sig, folder):
    """Send ``sig`` to this process once 02_slow has been running for a second."""
    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if _status(folder).get("02_slow") == "running":
                    time.sleep(1.5)
                    os.kill(os.getpid(), sig)
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _kernels_of(tmpdir):
    """Processes whose command line names a file under ``tmpdir`` (a kernel of ours)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(tmpdir).encode() in (p / "cmdline").read_bytes():
                    found.append(int(p.name))
            except OSError:
                pass
    return found


def test_a_temporary_folder_too_deep_for_a_socket_still_runs(tmp_path, monkeypatch):
    # AF_UNIX allows about 104 bytes of socket path; the kernel's sockets live in the run's
    # private folder under TMPDIR (the run failed with "ZMQError: File name too long")
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    res = _quick(tmp_path / "out", only=["01"])
    assert res.ok, res
    assert not list(deep.iterdir())  # the run's folder is gone with its sockets
    engine = wrun.PapermillEngine(kernel="unused").open()  # IPC sockets still, in a shorter folder
    folder = engine.runtime
    try:
        assert len(str(folder / "kernel-ipc999-65535")) <= 103 and folder.stat().st_mode & 0o077 == 0
    finally:
        engine.close()
    assert not folder.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_says_so_and_resume_completes_it(sig, tmp_path, monkeypatch):
    # Others may edit the package meanwhile; what changed code does is test_stale_reasons's.
    from unirepclip.workbook.run import runner
    monkeypatch.setattr(runner, "source_sha256", lambda root=None: "same source")
    monkeypatch.setattr(runner, "git_state", lambda path: {"commit": "c", "dirty": False})
    runtime_tmp = tmp_path / "tmp"
    runtime_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(runtime_tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    folder = tmp_path / "quick"
    if sig == signal.SIGINT:  # a complete earlier run, whose 02 outputs must survive
        first = _quick(tmp_path, "02_slow.seed=7")
        assert first.ok
    watcher = _interrupt_in_02(sig, folder)
    res = _quick(tmp_path, "02_slow.sleep_s=60")
    watcher.join()
    assert res.interrupted == sig.name and not res.ok
    m = _manifest(folder)
    assert m["status"] == "interrupted" and m["interrupted"]["signal"] == sig.name
    assert m["interrupted"]["at"] >= m["started"]
    assert _status(folder) == {"01_fast": "ok", "02_slow": "interrupted"}
    page = (folder / "index.html").read_text()
    assert "This run was interrupted by " + sig.name in page
    assert '<span class="status interrupted">interrupted</span>' in page
    assert not list(runtime_tmp.iterdir()), "the run's runtime folder was left behind"
    _no_sockets(QUICK, folder)
    deadline = time.time() + 30
    while _kernels_of(runtime_tmp) and time.time() < deadline:
        time.sleep(0.5)
    assert not _kernels_of(runtime_tmp), "a kernel outlived the run"
    assert not (folder / wrun.PARTIAL_DIR).exists()
    results = json.loads((folder / "results.json").read_text())
    if sig == signal.SIGINT:  # the old 02 outputs stay, whole, and the index says whose they are
        assert results["slow"] == {"n": 4, "seed": 7, "slept": 0.0}
        assert (folder / "02_slow.html").is_file()
        assert "the outputs shown are the earlier run" in page
    else:
        assert "slow" not in results and not (folder / "02_slow.html").exists()

    fast_before = {r["name"]: r for r in m["notebooks"]}["01_fast"]
    again = _quick(tmp_path, resume=True)
    assert again.ok
    by = {r["name"]: r for r in _manifest(folder)["notebooks"]}
    assert by["01_fast"]["earlier"] and "kept by --resume" in by["01_fast"]["kept"]
    assert by["01_fast"]["finished"] == fast_before["finished"]  # not rerun
    assert by["02_slow"]["status"] == "ok" and not by["02_slow"]["earlier"]
    assert by["02_slow"]["rerun_because"] == "it was interrupted"
    assert json.loads((folder / "results.json").read_text())["slow"]["slept"] == 0.0
    assert _manifest(folder)["status"] == "complete"
    assert "kept by --resume" in (folder / "index.html").read_text()


def test_stale_reasons():
    rec = {"name": "01_a", "status": "ok", "html": "01_a.html", "ipynb": "01_a.ipynb",
           "parameters": {"seed": 0, "n": 4}, "checkpoint": {"path": "x", "sha256": "aa"},
           "notebook_sha256": "n1", "code": {"source_sha256": "s1", "commit": "c1"}}

    def reason(**change):
        now = json.loads(json.dumps(rec))
        for k, v in change.items():
            now[k] = v
        return stale_reason(rec, now, folder)

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        assert "missing" in reason()
        for f in ("01_a.html", "01_a.ipynb", "results/01_a.json"):
            (folder / f).parent.mkdir(exist_ok=True)
            (folder / f).write_text("x")
        assert reason() is None
        assert reason(parameters={"seed": 1, "n": 4}) == "other parameters (seed)"
        assert reason(checkpoint={"path": "x", "sha256": "bb"}) == "another checkpoint sha256"
        assert reason(notebook_sha256="n2") == "the notebook file changed"
        assert "other code" in reason(code={"source_sha256": "s2", "commit": "c1"})
        assert "other code" in reason(code={"source_sha256": "s1", "commit": "c2"})
        for bad in ("failed", "interrupted", "not run"):
            assert stale_reason({**rec, "status": bad}, rec, folder) == f"it was {bad}"


# -- provenance -----------------------------------------------------------------------------------

def test_only_with_another_checkpoint_shows_both(tmp_path, monkeypatch):
    assert _quick(tmp_path).ok
    ck = tmp_path / "other.safetensors"
    ck.write_bytes(b"not really weights")
    import hashlib
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)  # -p paths are the caller's
    res = _quick(tmp_path, "checkpoint=other.safetensors", "seed=3", only=["02"])
    assert res.ok
    m = _manifest(res.output_dir)
    assert m["checkpoint"] == {"path": str(ck), "sha256": sha, "model": "UniRepLKNet-Demo"}
    by_path = {c["path"]: c for c in m["checkpoints"]}
    assert by_path[str(ck)]["notebooks"] == ["02_slow"] and by_path[str(ck)]["sha256"] == sha
    assert by_path["demo"]["notebooks"] == ["01_fast"]
    nbs = {r["name"]: r for r in m["notebooks"]}
    assert nbs["01_fast"]["checkpoint"]["path"] == "demo" and nbs["01_fast"]["seed"] == 0
    assert nbs["02_slow"]["seed"] == 3 and nbs["02_slow"]["model_name"] == "UniRepLKNet-Demo"
    assert nbs["02_slow"]["parameters"]["checkpoint"] == str(ck)
    page = (res.output_dir / "index.html").read_text()
    row = page.split("01_fast</a>", 1)[1].split("</tr>", 1)[0]
    assert "checkpoint <code>demo</code>" in row and "seed 0" in row  # differs from the run's
    row2 = page.split("02_slow</a>", 1)[1].split("</tr>", 1)[0]
    assert "checkpoint <code>" not in row2  # the run's own
    assert sha in page and "other checkpoint" in page


def test_output_files_follow_the_umask(tmp_path):
    from unirepclip.workbook import results
    old = os.umask(0o027)
    try:
        results.dump_json({"a": 1}, tmp_path / "r.json")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640
    with pytest.raises(ValueError):
        results.dump_json({"a": float("nan")}, tmp_path / "n.json")
    assert not (tmp_path / "n.json").exists() and len(list(tmp_path.iterdir())) == 1


def test_notebooks_at_once_give_what_one_after_another_gives(tmp_path, monkeypatch):
    from unirepclip.workbook.run import runner
    monkeypatch.setattr(runner, "source_sha256", lambda root=None: "same source")
    one = _quick(tmp_path / "one", "sleep_s=1")
    two = _quick(tmp_path / "two", "sleep_s=1", jobs=2)
    assert one.ok and two.ok
    assert [r.name for r in two.notebooks] == ["01_fast", "02_slow"]  # the workbook's order
    assert two.results == one.results and two.results  # the same figures, merged alike
    m1, m2 = _manifest(tmp_path / "one" / "quick"), _manifest(tmp_path / "two" / "quick")
    assert [r["status"] for r in m2["notebooks"]] == ["ok", "ok"]
    assert m1["parameters"] == m2["parameters"]
    for name in ("01_fast", "02_slow"):
        assert (tmp_path / "two" / "quick" / f"{name}.html").is_file()
    assert not (tmp_path / "two" / "quick" / wrun.PARTIAL_DIR).exists()
    # they did run at once: the second started before the first finished
    starts = sorted(r["started"] for r in m2["notebooks"])
    ends = sorted(r["finished"] for r in m2["notebooks"])
    assert starts[1] <= ends[0]
