"""A sweep's settings ``jobs`` at a time, each its own ``python -m unirepclip run`` process: pinned
to a GPU of its own when its device is CUDA, else given its share of the CPU threads; its log in
the sweep folder's ``logs/<slug>.log``. A signal to the sweep reaches each child as SIGINT."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from unirepclip.workbook.run.options import RunOptions
from unirepclip.workbook.run.signals import RunInterrupted
from unirepclip.workbook.sweep.spec import Setting

__all__ = ["child_command", "run_parallel"]


def child_command(options: RunOptions, setting: Setting, threads: Optional[int]) -> List[str]:
    """The command line that runs one setting as a plain run of the sweep's folder."""
    values, sources = dict(setting.values), dict(setting.sources)
    if threads is not None:
        values["num_threads"], sources["num_threads"] = threads, "--sweep"
    cmd = [sys.executable, "-m", "unirepclip", "run", "--profile", str(options.profile),
           "--output-dir", str(options.output_dir), "--notebooks-dir",
           str(options.notebooks_path), "--kernel", str(options.kernel), "--no-progress",
           "--sweep-setting",
           json.dumps({"slug": setting.slug, "values": values, "sources": sources})]
    for item in options.overrides:
        cmd += ["-p", item]
    for o in options.only or []:
        cmd += ["--only", o]
    if options.hide_code:
        cmd.append("--hide-code")
    if options.cell_timeout:
        cmd += ["--cell-timeout", str(options.cell_timeout)]
    if options.resume:
        cmd.append("--resume")
    return cmd


class _Pool:
    """The settings' processes, the free GPUs, and the CPU threads each gets."""

    def __init__(self, state: Any, options: RunOptions, dry: Dict[str, Any], gpu_ids: List[str]):
        self.state, self.options = state, options
        self.free: "queue.Queue[str]" = queue.Queue()
        for g in gpu_ids[:options.jobs]:
            self.free.put(g)
        self.gpu_ids = gpu_ids
        self.devices = {slug: {str(p.get("device")) for p in m["parameters"].values()
                               if p.get("device") is not None} for slug, m in dry.items()}
        self.declared = {slug: set().union(*(set(p) for p in m["parameters"].values()))
                         for slug, m in dry.items()}
        self.stop = threading.Event()
        self.procs: Dict[str, subprocess.Popen] = {}
        self.threads_each = max(1, (os.cpu_count() or 1) // options.jobs)
        self.user_threads = any("num_threads" in s.values for s in state.spec.settings) or any(
            o.partition("=")[0].rpartition(".")[2].strip() == "num_threads"
            for o in options.overrides)
        (state.folder / "logs").mkdir(exist_ok=True)

    def _log(self, msg: str) -> None:
        if not self.options.quiet:
            print(msg, file=sys.stderr, flush=True)

    def _launch(self, s: Setting, gpu: Optional[str]) -> int:
        env, threads = dict(os.environ), None
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        else:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads_each)
            if not self.user_threads and "num_threads" in self.declared.get(s.slug, set()):
                threads = self.threads_each
        with self.state.lock:
            entry = self.state.setting(s.slug)
            entry["status"] = "running"
            entry["pinned"] = ({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None
                               else {"num_threads": self.threads_each})
        self.state.write()
        self._log(f"setting {s.slug}: started" + (f" on GPU {gpu}" if gpu is not None else
                                                  f" with {self.threads_each} CPU threads"))
        with open(self.state.folder / "logs" / f"{s.slug}.log", "w") as log:
            if self.stop.is_set():
                return 0
            p = subprocess.Popen(child_command(self.options, s, threads), stdout=log,
                                 stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)  # signals reach it through us
            self.procs[s.slug] = p
            return p.wait()

    def one(self, s: Setting) -> None:
        if self.stop.is_set():
            return
        devs = self.devices.get(s.slug, set())
        on_gpu = bool(devs & {"cuda", "auto"}) and bool(self.gpu_ids) and not any(
            d.startswith("cuda:") for d in devs)
        gpu = self.free.get() if on_gpu else None
        try:
            rc = self._launch(s, gpu)
            with self.state.lock:
                self.state.refresh(s.slug)
                entry = self.state.setting(s.slug)
                if rc not in (0, 1) and entry["status"] in ("running", "ok", "not run"):
                    entry["status"] = "interrupted" if rc >= 128 else "failed"
                    entry["errors"].append(f"exit status {rc}; see logs/{s.slug}.log")
            self.state.write()
            self._log(f"setting {s.slug}: {self.state.setting(s.slug)['status']}")
        finally:
            if gpu is not None:
                self.free.put(gpu)

    def interrupt(self) -> None:
        import signal
        self.stop.set()
        for p in list(self.procs.values()):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in list(self.procs.values()):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def run_parallel(state: Any, options: RunOptions, dry: Dict[str, Any],
                 gpu_ids: List[str]) -> Optional[str]:
    """Run the settings ``options.jobs`` at a time; the signal that stopped them (None when all
    ended)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = _Pool(state, options, dry, gpu_ids)
    executor = ThreadPoolExecutor(max_workers=options.jobs)
    futures = [executor.submit(pool.one, s) for s in state.spec.settings]
    try:
        while not all(f.done() for f in futures):
            time.sleep(0.2)
        for f in futures:
            f.result()
        return None
    except RunInterrupted as e:
        pool.interrupt()
        executor.shutdown(wait=True)
        return e.signal
    finally:
        executor.shutdown(wait=False)
