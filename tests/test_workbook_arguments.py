"""Bad arguments are refused where they are parsed, one line each, before anything runs (issue 22):
options (--cell-timeout, --jobs, --output-dir), the dry run's checks of files, dataset and model
names and per-model ranges, a profile's repeated key, and the index after a run that died."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unirepclip.cli import main
from unirepclip.workbook import params
from unirepclip.workbook import run as wrun

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
QUICK = REPO / "tests" / "data" / "notebooks" / "quick"
QPROFILE = QUICK / "quick.yaml"


@pytest.fixture
def nothing_runs(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("something ran")

    monkeypatch.setattr(wrun.PapermillEngine, "open", boom)
    monkeypatch.setattr(wrun.PapermillEngine, "execute", boom)


def _refused(capsys, *args, notebooks=NOTEBOOKS):
    """The command's exit status must be 2; returns its stderr, which must be one line."""
    code = main(["run", "--notebooks-dir", str(notebooks), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("args, says", [
    (["--cell-timeout", "-5"], "--cell-timeout -5: must be a whole number of seconds above 0"),
    (["--cell-timeout", "0"], "--cell-timeout 0: must be a whole number of seconds above 0"),
    (["--jobs", "0"], "--jobs 0: must be at least 1"),
    (["--jobs", "-1"], "--jobs -1: must be at least 1"),
    (["--output-dir", ""], "--output-dir '': an empty folder name"),
    (["--notebooks-dir", ""], "--notebooks-dir '': an empty folder name"),
])
def test_bad_options_are_one_line_before_anything_runs(args, says, tmp_path, nothing_runs,
                                                       capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an --output-dir "" must not write here
    assert says in _refused(capsys, *args)
    assert list(tmp_path.iterdir()) == []


def test_run_options_refuse_the_same_in_the_api():
    with pytest.raises(params.ParameterError, match="--jobs 0"):
        wrun.RunOptions(jobs=0)
    with pytest.raises(params.ParameterError, match="--cell-timeout"):
        wrun.RunOptions(cell_timeout=-1)
    assert wrun.RunOptions(cell_timeout=5, jobs=2, sweep=("seed=0,1",)).jobs == 2
    assert wrun.RunOptions(jobs=2).jobs == 2  # a plain run: notebooks at once


@pytest.mark.parametrize("item, says", [
    ("checkpoint=none", "01_checkpoint: parameter 'checkpoint' names no file ("),
    ("checkpoint=missing.pt", "names no file ("),
    ("model_name=NoSuchModel", "parameter 'model_name' must be a .json file or one of "
                               "CLIP-UniRepLKNet-L, CLIP-UniRepLKNet-L-320, UniRepLKNet-Demo"),
    ("model_name=absent.json", "parameter 'model_name' names no file"),
    ("dataset=cifar11", "parameter 'dataset' must be one of synthetic, "),
    ("classnames_file=imagenet21k", "parameter 'classnames_file' names no file"),
])
def test_the_dry_run_checks_files_and_names(item, says, tmp_path, nothing_runs, capsys,
                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _refused(capsys, "--dry-run", "--only", "01", "-p", item)
    assert says in err and "(from -p " in err
    if item.startswith("checkpoint="):  # what else it accepts, and the path it looked for
        assert "one of demo" in err and "random weights" in err
        assert str(tmp_path / item.split("=")[1]) in err
    if item.startswith("model_name=No"):
        assert "demo recipe" not in err


def test_a_file_that_is_there_passes_the_dry_run(tmp_path, capsys, nothing_runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ck.pt").write_bytes(b"x")
    code = main(["run", "--notebooks-dir", str(NOTEBOOKS), "--dry-run", "--only", "01",
                 "-p", "checkpoint=ck.pt"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["01_checkpoint"]["checkpoint"] == str(
        tmp_path / "ck.pt")


def test_demo_weights_exist_only_for_the_models_the_recipe_trains(capsys, nothing_runs):
    err = _refused(capsys, "--dry-run", "--only", "01", "-p", "model_name=CLIP-UniRepLKNet-L")
    assert "'demo' names the shipped weights of UniRepLKNet-Demo" in err
    assert "demo.yaml)" in err  # where the 'demo' came from


def test_stage_ranges_follow_the_model_config(tmp_path, capsys, nothing_runs):
    err = _refused(capsys, "--dry-run", "--only", "03", "-p", "stages=[0,4]")
    assert "parameter 'stages' must be a non-empty list of ints from 0 to 3, got [0, 4]" in err
    # a two-stage tower (its config says so): stage 2 no longer exists, checked without weights
    cfg = json.loads((REPO / "lib/unirepclip/models/model_configs/UniRepLKNet-Demo.json")
                     .read_text())
    cfg["vision_cfg"]["timm_model_kwargs"] = {"depths": [1, 1]}
    (tmp_path / "two.json").write_text(json.dumps(cfg))
    err = _refused(capsys, "--dry-run", "--only", "03", "-p", f"model_name={tmp_path / 'two.json'}",
                   "-p", "checkpoint=''", "-p", "control_model_name=''", "-p", "stages=[0,2]")
    assert "from 0 to 1, got [0, 2]" in err
    from unirepclip.analysis.params import last_stage
    assert last_stage("CLIP-UniRepLKNet-L") == 3 and last_stage(str(tmp_path / "two.json")) == 1
    assert last_stage("no-such-model") is None


def test_a_profile_with_a_repeated_key_is_refused_naming_it(tmp_path, capsys, nothing_runs):
    prof = tmp_path / "twice.yaml"
    prof.write_text("common:\n  seed: 0\n  n_images: 2\n  seed: 1\n")
    err = _refused(capsys, "--profile", str(prof), notebooks=QUICK)
    assert str(prof) in err and "'seed' is given twice (lines 2 and 4)" in err


def test_a_key_repeated_at_the_top_level_too(tmp_path):
    prof = tmp_path / "top.yaml"
    prof.write_text("common: {seed: 0}\nnotebooks: {}\ncommon: {seed: 1}\n")
    with pytest.raises(params.ParameterError, match="'common' is given twice"):
        params.load_profile(prof)


def test_the_index_after_kill_9_says_interrupted_as_the_manifest_does(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "unirepclip", "run", "--notebooks-dir", str(QUICK), "--profile",
         str(QPROFILE), "--output-dir", str(tmp_path), "--only", "02", "-p", "sleep_s=30", "-q",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    folder = tmp_path / "quick"
    try:
        deadline = time.time() + 240
        while '"running"' not in _text(folder / "manifest.json") or "02_slow" not in _text(
                folder / "manifest.json") or not _running(folder):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        assert "still going" in _text(folder / "index.html")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    m = wrun.read_manifest(folder)
    assert m["status"] == "interrupted"
    page = _text(folder / "index.html")
    assert "This run was interrupted" in page and "still going" not in page
    assert json.loads(_text(folder / "manifest.json"))["status"] == "interrupted"
    assert main(["status", str(folder)]) == 0


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _running(folder: Path) -> bool:
    try:
        m = json.loads(_text(folder / "manifest.json"))
    except ValueError:
        return False
    return any(r.get("status") == "running" for r in m.get("notebooks", []))


@pytest.mark.parametrize("sig, jobs", [(signal.SIGINT, 1), (signal.SIGTERM, 1),
                                       (signal.SIGINT, 2)])
def test_a_stopped_run_says_so_in_one_line_without_kernel_tracebacks(sig, jobs, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "unirepclip", "run", "--notebooks-dir", str(QUICK), "--profile",
         str(QPROFILE), "--output-dir", str(tmp_path), "-p", "02_slow.sleep_s=30", "-q",
         "--no-progress", "--jobs", str(jobs)] + (["--only", "02"] if jobs == 1 else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    folder = tmp_path / "quick"
    deadline = time.time() + 240
    while not _running(folder):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(2)  # the kernel is in the notebook's sleep
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert "Traceback" not in err and "ZMQError" not in err, err
    assert err.strip().splitlines() == [f"error: interrupted by {signal.Signals(sig).name}; "
                                        "`run --resume` completes the run"]
    m = json.loads(_text(folder / "manifest.json"))
    assert m["status"] == "interrupted"
    assert {r["name"]: r["status"] for r in m["notebooks"]}["02_slow"] == "interrupted"
    assert not (folder / "02_slow.html").exists() and not (folder / ".partial").exists()


def test_a_write_that_fails_ends_the_notebook_failed_naming_the_file(tmp_path):
    """A file-size limit stands for a full disk: the notebook's HTML (about 300 kB) cannot be
    written while the manifest and index (a few kB) can. The run must end failed, name the file
    it could not write, and leave no truncated page in place."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run(
        [sys.executable, "-m", "unirepclip", "run", "--notebooks-dir", str(QUICK), "--profile",
         str(QPROFILE), "--output-dir", str(tmp_path), "--only", "01", "-q", "--no-progress"],
        preexec_fn=limit, capture_output=True, text=True, timeout=300)
    folder = tmp_path / "quick"
    assert proc.returncode == 1, proc.stderr
    m = json.loads((folder / "manifest.json").read_text())
    run = m["notebooks"][0]
    assert m["status"] == "failed" and run["status"] == "failed" and run["html"] is None
    assert "File too large" in run["error"] and "01_fast.html" in run["error"]
    assert not (folder / "01_fast.html").exists()
    assert not list(folder.rglob("*.tmp")) and not (folder / ".partial").exists()
    page = (folder / "index.html").read_text()
    assert "still going" not in page and "01_fast.html" in page  # the error names it


def test_a_profile_is_read_once_per_run_and_once_per_sweep(tmp_path, monkeypatch):
    from unirepclip.workbook.params import profiles
    reads = []
    real = profiles.load_yaml
    monkeypatch.setattr(profiles, "load_yaml", lambda text: reads.append(text) or real(text))
    assert main(["run", "--notebooks-dir", str(QUICK), "--profile", str(QPROFILE), "--dry-run",
                 "--output-dir", str(tmp_path)]) == 0
    assert reads == [QPROFILE.read_text()]
    reads.clear()
    assert main(["run", "--notebooks-dir", str(QUICK), "--profile", str(QPROFILE), "--dry-run",
                 "--output-dir", str(tmp_path), "--sweep", "seed=0,1,2"]) == 0
    assert reads == [QPROFILE.read_text()]  # not once per setting


def test_the_dry_run_refuses_an_erf_resolution_the_explorer_would(capsys, nothing_runs):
    from unirepclip.analysis import explore
    err = _refused(capsys, "--dry-run", "--only", "06", "-p", "erf_resolution=7")
    assert "parameter 'erf_resolution' must be an int >= 8, got 7" in err, err
    with pytest.raises(ValueError, match=">= 8"):  # the explorer's own floor is the same one
        explore.ErfQuery(resolution=7)
    assert main(["run", "--notebooks-dir", str(NOTEBOOKS), "--dry-run", "--only", "06",
                 "-p", "erf_resolution=8"]) == 0
