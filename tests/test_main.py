"""The command line (`python -m unirepclip`): inspect, run --dry-run, usage errors."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

import unirepclip
from unirepclip.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def demo_ckpt(tmp_path_factory):
    model = unirepclip.create_model("UniRepLKNet-Demo")
    path = tmp_path_factory.mktemp("ckpt") / "demo.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_inspect_json_reports_the_file(demo_ckpt, capsys):
    assert main(["inspect", str(demo_ckpt), "--model", "UniRepLKNet-Demo", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["sha256"] == hashlib.sha256(demo_ckpt.read_bytes()).hexdigest()
    assert rep["layout"] == "open_clip" and rep["matching_configs"] == ["UniRepLKNet-Demo"]
    assert main(["inspect", str(demo_ckpt), "--model", "UniRepLKNet-Demo"]) == 0
    assert rep["sha256"] in capsys.readouterr().out


def test_inspect_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_run_dry_run_prints_the_parameters(capsys):
    code = main(["run", "--dry-run", "--notebooks-dir", str(DATA / "notebooks"),
                 "--profile", str(DATA / "toy_profile.yaml"), "-p", "01_record.n_points=3"])
    assert code == 0
    params = json.loads(capsys.readouterr().out)
    assert params["01_record"]["n_points"] == 3 and params["01_record"]["scale"] == 2.0
    assert params["01_record"]["device"] == "cpu"  # the notebook's own default
    assert params["02_fail"]["seed"] == 1


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert main(["run", "--profile", "nope", "--notebooks-dir", str(DATA / "notebooks")]) == 2
    assert "profile 'nope' not found" in capsys.readouterr().err


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "unirepclip", "run", "--list-profiles"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "imagenet-l" in r.stdout


def test_user_errors_are_one_line_and_exit_2_tracebacks_only_with_debug(tmp_path, capsys):
    out = tmp_path / "demo_out"
    assert main(["train-demo", "--out", str(out), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: ValueError: the recipe trains nothing: steps=0 (counts must be >= 1, "
                   "lr > 0)"]
    assert not out.exists()  # no random "demo" checkpoint written
    with pytest.raises(ValueError, match="trains nothing"):
        main(["train-demo", "--out", str(out), "--steps", "0", "--debug"])
    assert main(["extract", "--model", "UniRepLKNet-Demo", "--dataset", "synthetic",
                 "--checkpoint", str(tmp_path / "none.pt"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.pt" in err[0] and "Traceback" not in err[0]
