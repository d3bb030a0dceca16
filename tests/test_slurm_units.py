"""The Slurm executor's pieces that need no cluster: the profile's slurm: section and the flags,
the shared-file-system state files and lock."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from unirepclip.workbook.params import ParameterError, load_profile
from unirepclip.workbook.params.slurm import slurm_settings
from unirepclip.workbook.run import RunOptions
from unirepclip.workbook.run.shared_fs import SharedLock, read_states, write_state


def test_profile_slurm_section_is_checked_and_merged_over_its_base(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("slurm:\n  partition: gpu\n  time_min: 30\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base}\nslurm:\n  time_min: 90\n")
    prof = load_profile(child)
    assert prof["slurm"] == {"partition": "gpu", "time_min": 90}
    merged = slurm_settings(prof["slurm"], {"partition": "a100", "account": None})
    assert merged["partition"] == "a100" and merged["time_min"] == 90
    assert merged["max_requeue"] == 3  # the default
    bad = tmp_path / "bad.yaml"
    bad.write_text("slurm:\n  gpus: 2\n  time_min: 0\n")
    with pytest.raises(ParameterError) as e:
        load_profile(bad)
    assert e.value.problems == [f"profile {bad}: slurm.gpus: unknown key (allowed: partition, "
                                "account, gpus_per_task, cpus_per_task, mem_gb, time_min, "
                                "max_requeue, signal_delay_s, parallelism)",
                                f"profile {bad}: slurm.time_min = 0: must be at least 1"]


def test_slurm_flags_need_the_slurm_executor():
    with pytest.raises(ParameterError, match="--partition: a Slurm setting, given without"):
        RunOptions(slurm={"partition": "gpu"})
    with pytest.raises(ParameterError, match="--gpus-per-task -1: must be at least 0"):
        RunOptions(executor="slurm", slurm={"gpus_per_task": -1})
    with pytest.raises(ParameterError, match="--jobs 2 with --executor slurm"):
        RunOptions(executor="slurm", jobs=2)
    assert RunOptions(executor="slurm", slurm={"gpus_per_task": 0}).executor == "slurm"


def test_state_files_are_replaced_whole(tmp_path):
    write_state(tmp_path, "a", status="queued")
    write_state(tmp_path, "a", status="running", attempt=1)
    write_state(tmp_path, "b", status="ok")
    states = read_states(tmp_path)
    assert {k: v["status"] for k, v in states.items()} == {"a": "running", "b": "ok"}
    assert states["a"]["attempt"] == 1
    assert sorted(p.name for p in (tmp_path / "states").iterdir()) == ["a.json", "b.json"]


def test_shared_lock_refuses_a_living_holder_and_breaks_a_dead_one(tmp_path):
    path = tmp_path / ".lock"
    assert SharedLock(path).acquire({"job_id": None}) is None
    held = SharedLock(path).acquire({"job_id": None})  # this process holds it: alive
    assert held is not None and held["pid"] == os.getpid()
    # a holder whose process is gone (on this host) is broken
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    path.write_text(json.dumps({**held, "pid": int(dead)}))
    assert SharedLock(path).acquire({"job_id": "7"}) is None
    assert json.loads(path.read_text())["job_id"] == "7"
    # the caller decides what alive means (a Slurm sweep: its array has a task not final)
    assert SharedLock(path, alive=lambda h: False).acquire({"job_id": "8"}) is None
    assert SharedLock(path, alive=lambda h: True).acquire({"job_id": "9"})["job_id"] == "8"
