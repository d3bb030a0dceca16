"""The Slurm executor's pieces that need no cluster: the profile's slurm: section and the flags,
the shared-file-system state files and lock."""
from __future__ import annotations

import json
import os
import shutil
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


def test_a_task_of_an_earlier_submission_writes_no_state_over_a_later_ones(tmp_path):
    from unirepclip.workbook.run.shared_fs import read_state
    from unirepclip.workbook.sweep.slurm import SettingTask

    write_state(tmp_path, "a", status="queued", submission=20)
    SettingTask(str(tmp_path), ["true"], "a", 0, False, submission=10)._state("failed")
    assert read_state(tmp_path, "a")["status"] == "queued"  # kept: the later submission's
    assert read_state(tmp_path, "nosuch") is None


def test_slurms_sigterm_marks_the_task_failed_at_once_unless_it_was_requeued(tmp_path, monkeypatch):
    """scancel's SIGTERM reaches the task's process too: its state says failed at once (the run's
    shutdown may outlast KillWait, after which the process is killed before writing it); after
    a checkpoint (time limit, preemption) the SIGTERM of the requeue is no cancellation."""
    import pickle
    import signal

    from unirepclip.workbook.run.shared_fs import read_state
    from unirepclip.workbook.sweep import slurm as slurm_mod
    from unirepclip.workbook.sweep.slurm import SettingTask

    monkeypatch.setattr(slurm_mod, "render", lambda folder: None)  # no sweep page here
    write_state(tmp_path, "a", status="running", submission=5)
    task = pickle.loads(pickle.dumps(SettingTask(str(tmp_path), ["true"], "a", 0, False, 5)))
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    signal.signal(signal.SIGTERM, lambda *a: seen.append("submitit's"))
    try:
        task._watch_cancel()
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, before)
    state = read_state(tmp_path, "a")
    assert state["status"] == "failed" and "cancelled (Slurm's SIGTERM)" in state["error"]
    assert seen == ["submitit's"]  # the handler it replaced still runs
    write_state(tmp_path, "a", status="queued", submission=5)
    task._requeued = True
    task._on_cancel()
    assert read_state(tmp_path, "a")["status"] == "queued"
    task._requeued, task._rc["rc"] = False, 0  # the run ended already: its own state stands
    task._on_cancel()
    assert read_state(tmp_path, "a")["status"] == "queued"


def test_a_requeued_extraction_reruns_the_same_task_and_bad_layouts_are_named(tmp_path):
    """The job's requeue hands back the same extraction (which resumes from its finished shards:
    tests/test_extract.py); the layout checks need no cluster."""
    from unirepclip.workbook.extract_slurm import ExtractTask, build_parser, settings_problems

    task = ExtractTask({"cache_dir": str(tmp_path), "device": "cpu"})
    again = task.checkpoint()
    assert isinstance(again.function, ExtractTask) and again.function.args == task.args
    assert again.function is not task

    def problems(*argv):
        args = build_parser().parse_args(["--model", "UniRepLKNet-Demo", "--dataset", "synthetic",
                                          "--cache-dir", str(tmp_path), "--executor", "slurm",
                                          "--backend", "gloo", *argv])
        return [p for p in settings_problems(args) if not p.startswith("--executor slurm:")]

    assert problems("--device", "cuda") == [
        "--gpus-per-node 0 with --device cuda: each rank needs a GPU of its own; pass "
        "--gpus-per-node G (one process per GPU)"]
    assert problems("--device", "cuda", "--gpus-per-node", "4", "--tasks-per-node", "2") == [
        "--tasks-per-node 2 with --device cuda: one process per GPU, so --gpus-per-node (4) sets "
        "it; drop --tasks-per-node"]
    assert problems("--gpus-per-node", "2") == [
        "--gpus-per-node 2 with --device cpu: the ranks would not use the GPUs; pass --device "
        "cuda, or drop --gpus-per-node"]
    assert problems("--backend", "nccl")[0].startswith("--backend nccl needs --device cuda")
    none = tmp_path / "none.pt"
    assert problems("--nodes", "0", "--checkpoint", str(none)) == [
        "--nodes 0: must be at least 1", f"--checkpoint {none}: names no file ({none} does not "
        "exist); or one of demo; or '' (random weights)"]
    assert problems("--device", "cuda", "--gpus-per-node", "2") == []


def _fake_slurm(folder, sinfo_text, sinfo_mode=0o755):
    """Slurm's four client commands in ``folder``: ``sinfo`` as given, the others harmless."""
    folder.mkdir()
    for name in ("sbatch", "sacct", "scontrol"):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)
    (folder / "sinfo").write_text(sinfo_text)
    (folder / "sinfo").chmod(sinfo_mode)
    return str(folder)


def test_a_cluster_that_cannot_answer_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    from unirepclip.workbook.params.slurm import cluster_problems
    from unirepclip.workbook.sweep.slurm import check_slurm

    sleep = shutil.which("sleep")  # found before PATH holds only a fake Slurm
    ok = _fake_slurm(tmp_path / "ok", "#!/bin/sh\nprintf 'cpu\\ngpu\\ngpu\\n'\n")
    monkeypatch.setenv("PATH", ok)
    assert cluster_problems("gpu") == [] and cluster_problems(None) == []
    assert cluster_problems("a100") == ["slurm partition 'a100': no such partition on this "
                                        "cluster (partitions: cpu, gpu)"]
    with pytest.raises(ParameterError) as e:  # the partition, then the settings' own problems
        check_slurm({"partition": "a100"}, {"s": {"parameters": {"n": {"device": "cuda"}}}})
    assert len(e.value.problems) == 2 and e.value.problems[0].startswith("slurm partition 'a1")

    hung = _fake_slurm(tmp_path / "hung", f"#!/bin/sh\nexec {sleep} 30\n")
    monkeypatch.setenv("PATH", hung)
    with pytest.raises(ParameterError) as e:
        cluster_problems("gpu", timeout_s=0.5)
    assert e.value.problems == ["--executor slurm: `sinfo` did not answer within 0.5 s (is "
                                "slurmctld reachable? `sinfo` by hand says)"]

    broken = _fake_slurm(tmp_path / "broken", "not a program\n")  # executable, but not runnable
    monkeypatch.setenv("PATH", broken)
    with pytest.raises(ParameterError) as e:
        cluster_problems("gpu")
    [line] = e.value.problems
    assert line.startswith("--executor slurm: `sinfo` could not be run: Exec format error (")
    assert line.endswith(f"{broken}/sinfo)")
    from unirepclip.workbook.extract_slurm import build_parser, settings_problems
    args = build_parser().parse_args(["--model", "ViT-B-32", "--dataset", "synthetic",
                                      "--cache-dir", str(tmp_path), "--executor", "slurm",
                                      "--nodes", "0", "--partition", "gpu"])
    assert settings_problems(args) == ["--nodes 0: must be at least 1", line]  # with the rest

    failing = _fake_slurm(tmp_path / "failing", "#!/bin/sh\necho 'slurm_load_partitions: "
                          "Unable to contact\n  slurm controller' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", failing)
    with pytest.raises(ParameterError) as e:  # check_slurm raises it as it is, first thing
        check_slurm({"partition": "gpu"}, {"s": {"parameters": {"n": {"device": "cuda"}}}})
    assert e.value.problems == ["--executor slurm: `sinfo` failed: slurm_load_partitions: "
                                "Unable to contact slurm controller"]

    not_executable = _fake_slurm(tmp_path / "noexec", "#!/bin/sh\necho gpu\n", 0o644)
    monkeypatch.setenv("PATH", not_executable)
    with pytest.raises(ParameterError) as e:
        cluster_problems(None)
    assert e.value.problems == ["--executor slurm: sinfo not found on PATH; run from a Slurm "
                                "login node (or pass --executor local)"]


def test_extract_on_slurm_takes_the_models_and_checkpoints_a_notebook_takes(tmp_path):
    """--model / --checkpoint are checked before submitting as a notebook's model_name /
    checkpoint: an open_clip name with one of its pretrained tags, local-dir: with its config,
    hf-hub:, demo for a demo model are accepted; what a notebook refuses is refused, one line."""
    from unirepclip.workbook.extract_slurm import build_parser, settings_problems

    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text('{"model_cfg": {"embed_dim": 8}}')
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"")

    def problems(model, checkpoint=None):
        args = build_parser().parse_args(
            ["--model", model, "--dataset", "synthetic", "--cache-dir", str(tmp_path / "c"),
             "--executor", "slurm"] + (["--checkpoint", checkpoint] if checkpoint else []))
        return [p for p in settings_problems(args) if not p.startswith("--executor slurm:")]

    for model, checkpoint in [("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-B-32", None),
                              (f"local-dir:{folder}", None), ("hf-hub:org/repo", None),
                              ("UniRepLKNet-Demo", "demo"), ("CLIP-UniRepLKNet-L", str(ckpt)),
                              ("UniRepLKNet-Demo", "hf-hub:org/repo/w.safetensors")]:
        assert problems(model, checkpoint) == [], (model, checkpoint)
    assert problems("ViT-B-32", "laion2b_s99b") == [
        "--checkpoint laion2b_s99b: names no file (laion2b_s99b does not exist); or one of demo; "
        "or '' (random weights)"]
    assert problems("ViT-B-32", "openai") == []  # a tag of ViT-B-32 ...
    [line] = problems("convnext_base", "openai")  # ... and of others, but not of this one
    assert line.startswith("--checkpoint openai: 'openai' is not a pretrained tag of "
                           "'convnext_base' (its tags: ")
    assert problems(f"local-dir:{tmp_path}") == [
        f"--model local-dir:{tmp_path}: 'local-dir:{tmp_path}': {tmp_path} has no "
        "open_clip_config.json (open_clip's save_for_hf writes one beside the weights)"]
    [line] = problems("CLIP-UniRepLKNet-L", "demo")
    assert line.startswith("--checkpoint demo: 'demo' names the shipped weights of ")
    assert problems("hf-hub:repo") == [
        "--model hf-hub:repo: expected hf-hub:<org>/<repo>, got 'hf-hub:repo'"]
    [line] = problems("ViT-Q-99")
    assert line.startswith("--model ViT-Q-99: must be a .json file or one of ") and \
        line.endswith(", got 'ViT-Q-99'")
