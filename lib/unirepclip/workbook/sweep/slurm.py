"""``run --executor slurm``: a sweep's settings as one Slurm job array through submitit, each
task one setting run as ``python -m unirepclip run --sweep-setting ...`` (the same child as
``--jobs``), into the same report folder as a local sweep.

In the folder: ``slurm/`` holds submitit's files (the pickled task, its stdout/stderr per
attempt), ``logs/<slug>.log`` each setting's own log, ``states/<slug>.json`` each task's state
(``queued``, ``running``, ``ok``, ``failed``; written atomically by the task itself), and the
index is re-rendered from those by whichever task changes state, by the submitting command while
it watches, and by ``python -m unirepclip status DIR``.

A task warned of its time limit or of preemption (submitit's signal, ``signal_delay_s`` before
the end) stops its run cleanly and is requeued (at most ``max_requeue`` times for a time limit);
the requeued task runs with ``--resume``: a finished notebook is kept, an interrupted one rerun.
A task cancelled with ``scancel`` (or killed) is shown failed; ``run --resume`` with the same
sweep submits again and finishes it.

Each submission is named (``submission``, a number that grows with time) in the sweep's document,
in its queued state files and in its tasks: a task of an earlier submission that is still stopping
(``scancel`` waits ``KillWait`` before it kills) writes no state over a later submission's, and a
resumed task waits (``run --wait``) for the setting's folder that such a task may still hold
instead of failing with "in use"."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from unirepclip.workbook.params import ParameterError
from unirepclip.workbook.params.slurm import cluster_problems, slurm_settings
from unirepclip.workbook.run.folder import RunLocked
from unirepclip.workbook.run.options import RunOptions
from unirepclip.workbook.run.shared_fs import SharedLock, read_state, write_state
from unirepclip.workbook.sweep.parallel import child_command
from unirepclip.workbook.sweep.slurm_state import (LOCK_NAME, SLURM_DIR, render, render_lock,
                                                   save_spec, slurm_active)

__all__ = ["SettingTask", "check_slurm", "run_on_slurm", "submit_sweep", "watch"]


def _attempt() -> int:
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


class SettingTask:
    """One setting's run as a Slurm task (pickled by submitit); ``checkpoint`` makes it
    requeueable: it stops the run cleanly and hands back itself with ``resume`` set."""

    def __init__(self, folder: str, command: List[str], slug: str, index: int, resume: bool,
                 submission: int = 0):
        self.folder, self.command, self.slug = folder, list(command), slug
        self.index, self.resume, self.submission = index, resume, submission
        self._proc: Optional[subprocess.Popen] = None
        self._rc: Dict[str, int] = {}
        self._requeued = False

    def __getstate__(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_proc", "_rc", "_requeued")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update({"submission": 0, **state}, _proc=None, _rc={}, _requeued=False)

    def _on_cancel(self) -> None:
        """Slurm's SIGTERM (scancel) reaches this process too: the state says failed at once,
        since the run's own shutdown may outlast Slurm's KillWait, after which this process is
        killed before it could write it; the run's exit status, if it comes in time, refines it.
        A requeue after :meth:`checkpoint` is not a cancellation (its state says queued)."""
        if not self._requeued and "rc" not in self._rc:
            self._state("failed", error=f"cancelled (Slurm's SIGTERM); see logs/{self.slug}.log; "
                        "`run --resume` finishes it")

    def _watch_cancel(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            self._on_cancel()
            if callable(previous):
                previous(signum, frame)  # submitit's own handler
        signal.signal(signal.SIGTERM, on_term)

    def _state(self, status: str, **extra: Any) -> None:
        now = read_state(Path(self.folder), self.slug) or {}
        if int(now.get("submission") or 0) > self.submission:
            return  # the setting was submitted again since: its state is that submission's
        write_state(Path(self.folder), self.slug, status=status, index=self.index,
                    job_id=os.environ.get("SLURM_JOB_ID"), attempt=_attempt(),
                    submission=self.submission, **extra)
        render(Path(self.folder))

    def __call__(self) -> str:
        resume = self.resume or _attempt() > 0
        # resumed: a cancelled attempt may still be stopping and hold the setting's folder
        cmd = self.command + [f for f in ("--resume", "--wait")
                              if resume and f not in self.command]
        self._state("running")
        self._watch_cancel()
        log = Path(self.folder) / "logs" / f"{self.slug}.log"
        log.parent.mkdir(exist_ok=True)
        env = dict(os.environ)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = cpus
        with open(log, "a") as out:
            out.write(f"== attempt {_attempt()} of Slurm job {os.environ.get('SLURM_JOB_ID')} "
                      f"on {os.uname().nodename}: {' '.join(cmd)}\n")
            out.flush()
            # Slurm's warning signal (USR2) reaches every process of the task: only this one,
            # submitit's handler, acts on it; the run is then stopped with SIGTERM (checkpoint).
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
            waiter = threading.Thread(target=lambda: self._rc.setdefault("rc", self._proc.wait()),
                                      daemon=True)
            waiter.start()
            while waiter.is_alive():
                waiter.join(0.5)  # a signal's handler (checkpoint) runs between these waits
        rc = self._rc["rc"]
        if rc == 0:
            self._state("ok", exit_status=0)
        elif rc == 1:
            self._state("failed", exit_status=1, error=f"a notebook failed; see logs/{self.slug}"
                        ".log")
        else:
            why = (f"stopped by signal {-rc}" if rc < 0 else
                   f"stopped by a signal (exit status {rc})" if rc >= 128 else
                   f"exit status {rc}")
            self._state("failed", exit_status=rc, error=f"{why} (cancelled or killed?); see "
                        f"logs/{self.slug}.log; `run --resume` finishes it")
        return "ok" if rc == 0 else "failed"

    def checkpoint(self) -> Any:
        """Slurm warned of the time limit or of preemption: stop the run cleanly (its notebook
        marked interrupted), then be requeued to run with ``--resume``."""
        import submitit
        self._requeued = True  # the SIGTERM that follows a requeue is not a cancellation
        p = self._proc
        if p is not None and "rc" not in self._rc:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
            end = time.monotonic() + 60
            while "rc" not in self._rc and time.monotonic() < end:
                time.sleep(0.2)
        self._state("queued", requeued=True, note="requeued after Slurm's time-limit or "
                    "preemption signal; resumes with --resume")
        return submitit.helpers.DelayedSubmission(
            SettingTask(self.folder, self.command, self.slug, self.index, True, self.submission))


def check_slurm(settings: Dict[str, Any], dry: Dict[str, Any]) -> None:
    """Everything about the Slurm settings that can be checked before submitting: the commands
    are there (else :func:`cluster_problems` raises), the partition exists, and a setting that
    runs on CUDA gets a GPU."""
    problems = cluster_problems(settings.get("partition"))
    for slug, manifest in dry.items():
        devices = {str(p.get("device")) for p in manifest["parameters"].values()
                   if p.get("device") is not None}
        cuda = sorted(d for d in devices if d.startswith("cuda"))
        if cuda and not settings.get("gpus_per_task"):
            problems.append(f"slurm gpus_per_task {settings.get('gpus_per_task') or 0}: setting "
                            f"{slug} runs on device {cuda[0]!r}; pass --gpus-per-task 1 (or set "
                            "slurm.gpus_per_task in the profile)")
            break
    if problems:
        raise ParameterError(problems)


def _executor(folder: Path, settings: Dict[str, Any], name: str):
    import submitit
    ex = submitit.AutoExecutor(folder=folder / SLURM_DIR, cluster="slurm",
                               slurm_max_num_timeout=int(settings["max_requeue"]))
    params: Dict[str, Any] = {
        "name": f"unirepclip-{name}", "timeout_min": int(settings["time_min"]),
        "cpus_per_task": int(settings["cpus_per_task"]), "tasks_per_node": 1, "nodes": 1,
        "slurm_signal_delay_s": int(settings["signal_delay_s"])}
    if settings.get("gpus_per_task"):
        params["gpus_per_node"] = int(settings["gpus_per_task"])
    if settings.get("mem_gb") is not None:
        params["mem_gb"] = settings["mem_gb"]
    for key in ("partition", "account"):
        if settings.get(key) is not None:
            params[f"slurm_{key}"] = settings[key]
    if settings.get("parallelism") is not None:
        params["slurm_array_parallelism"] = int(settings["parallelism"])
    ex.update_parameters(**params)
    return ex


def _lock(folder: Path, options: RunOptions) -> SharedLock:
    lock = SharedLock(folder / LOCK_NAME, alive=slurm_active)
    held = lock.acquire({"command": options.full_command, "job_id": None})
    if held is not None:
        job = held.get("job_id")
        raise RunLocked(f"sweep folder {folder} is in use by "
                        + (f"Slurm job {job} (`scancel {job}` stops it)" if job else
                           f"the command {' '.join(map(str, held.get('command') or []))!r} "
                           f"(pid {held.get('pid')} on {held.get('host')})")
                        + "; choose another --output-dir")
    return lock


def submit_sweep(state: Any, options: RunOptions, dry: Dict[str, Any],
                 prof: Dict[str, Any]) -> Dict[str, Any]:
    """Submit every setting of ``state`` (a :class:`~unirepclip.workbook.sweep.runner.SweepState`
    whose document is already built) as one job array; returns the sweep's ``slurm`` facts.
    Raises :class:`ParameterError` (bad settings) or ``RunLocked`` before anything is
    submitted."""
    settings = slurm_settings(prof.get("slurm"), options.slurm)
    check_slurm(settings, dry)
    folder = state.folder
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder, options)
    try:
        save_spec(folder, state.spec)
        sub = time.time_ns()
        state.doc["executor"] = "slurm"
        state.doc["slurm"] = {"settings": settings, "job_id": None, "submission": sub}
        with render_lock(folder):  # a task of an earlier submission may be rendering
            for i, s in enumerate(state.spec.settings):
                state.setting(s.slug)["status"] = "queued"
                write_state(folder, s.slug, status="queued", index=i, attempt=0, submission=sub)
            state.write()
        ex = _executor(folder, settings, prof["name"])
        with ex.batch():
            jobs = [ex.submit(SettingTask(str(folder), child_command(options, s, None), s.slug,
                                          i, bool(options.resume), sub))
                    for i, s in enumerate(state.spec.settings)]
    except BaseException:
        lock.release()
        raise
    array = jobs[0].job_id.split("_")[0]
    lock.update(job_id=array)
    state.doc["slurm"]["job_id"] = array
    state.doc["slurm"]["tasks"] = {s.slug: j.job_id for s, j in zip(state.spec.settings, jobs)}
    with render_lock(folder):
        state.write()
    render(folder)
    return state.doc["slurm"]


def watch(folder: Path, quiet: bool, poll_s: float = 2.0) -> Dict[str, Any]:
    """Re-render the index as the tasks change state until every setting is final; returns the
    sweep's document. Ctrl-C stops watching (the tasks go on)."""
    last = None
    while True:
        doc = render(folder)
        now = {s["slug"]: s["status"] for s in doc["settings"]}
        if now != last and not quiet:
            print("slurm: " + ", ".join(f"{k} {v}" for k, v in now.items()), file=sys.stderr,
                  flush=True)
        last = now
        if doc["status"] != "running":
            return doc
        time.sleep(poll_s)


def run_on_slurm(state: Any, options: RunOptions, dry: Dict[str, Any], prof: Dict[str, Any]):
    """``run_sweep`` on Slurm: check, submit, then (unless ``options.detach``) watch the index
    until every setting is final. A dry run checks the Slurm settings too and submits nothing."""
    from unirepclip.workbook.run.engine import ensure_kernel
    from unirepclip.workbook.run.folder import SWEEP_FILE
    from unirepclip.workbook.sweep.runner import SweepResult
    folder = state.folder
    if options.dry_run:
        check_slurm(slurm_settings(prof.get("slurm"), options.slurm), dry)
        state.doc["status"] = "dry run"
        return SweepResult(folder, state.doc)
    if (folder / "manifest.json").exists() and not (folder / SWEEP_FILE).exists():
        raise ParameterError([f"report folder {folder} holds a plain run's report "
                              f"({folder / 'manifest.json'}); a sweep writes its settings' "
                              "folders and its own index there: choose another --output-dir"])
    options = options.replace(output_dir=folder, kernel=options.kernel or ensure_kernel())
    facts = submit_sweep(state, options, dry, prof)
    if not options.quiet:
        print(f"slurm: submitted job array {facts['job_id']} ({len(state.doc['settings'])} "
              f"settings); `python -m unirepclip status {folder}` shows it", file=sys.stderr,
              flush=True)
    if options.detach:
        return SweepResult(folder, render(folder))
    try:
        doc = watch(folder, options.quiet)
    except KeyboardInterrupt:
        print(f"slurm: stopped watching; the tasks go on (`scancel {facts['job_id']}` stops "
              "them)", file=sys.stderr, flush=True)
        doc = render(folder)
    return SweepResult(folder, doc)
