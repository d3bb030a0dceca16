"""Executing one notebook (papermill's word: an engine). :class:`PapermillEngine` runs it in a fresh
kernel of this interpreter with papermill; a run takes any object with the same three methods
(``open``, ``execute``, ``close``), which is how the tests run the runner without kernels.

The kernel's connection file and IPC sockets live in a folder private to the run, removed on
close; a signal that stops the run inside papermill leaves nobody else to end the kernel, so the
engine remembers each kernel it starts and ends those still running on close."""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from unirepclip.workbook.params import KERNEL_NAME, Notebook

__all__ = ["PapermillEngine", "ensure_kernel", "kernel_display_name", "error_notebook"]

# A kernel's sockets are <runtime>/kernel-ipc<N>-<port>. Linux allows 107 bytes of socket path,
# macOS 103; the longest name checked is kernel-ipc999-65535.
_IPC_NAME = "kernel-ipc"
_SOCKET_PATH_MAX = 103


def kernel_display_name(name: str = KERNEL_NAME) -> str:
    """The name JupyterLab shows for kernel ``name``: ``Python (unirepclip)`` for the project's,
    as the README and the notebooks' metadata write it."""
    return f"Python ({name})"


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Register (once) a Jupyter kernelspec ``name`` for this interpreter in ``sys.prefix``, shown
    as :func:`kernel_display_name`, and check that Jupyter finds it pointing at
    ``sys.executable``; return ``name``. A kernelspec of this interpreter shown under another
    name is registered again."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def ours(spec) -> bool:
        # The same bin folder as this interpreter (not symlinks resolved: every venv's python
        # resolves to the same base interpreter); a bare "python" is replaced by sys.executable.
        exe = spec.argv[0] if spec.argv else ""
        here = os.path.dirname(os.path.abspath(sys.executable))
        return exe in ("python", "python3") or (
            os.path.isabs(exe) and os.path.dirname(os.path.abspath(exe)) == here)

    display = kernel_display_name(name)
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        if ours(spec) and spec.display_name == display:
            return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install
    try:
        install(kernel_name=name, display_name=display, prefix=sys.prefix)
    except OSError:  # a read-only prefix (system Python): the user's Jupyter folder
        install(kernel_name=name, display_name=display, user=True)
    spec = KernelSpecManager().get_kernel_spec(name)
    if not ours(spec):
        raise RuntimeError(
            f"Jupyter kernel {name!r} resolves to {spec.argv[0]} ({spec.resource_dir}), not this "
            f"interpreter {sys.executable}; remove that kernelspec "
            f"(`jupyter kernelspec remove {name}`) or pass --kernel")
    return name


def error_notebook(path: Path, message: str):
    """The notebook at ``path`` with an error cell on top, for a run that papermill could not
    finish itself (a kernel that did not start or died)."""
    import nbformat
    doc = nbformat.read(str(path), as_version=4)
    cell = nbformat.v4.new_markdown_cell(
        '<span id="papermill-error-cell"></span>\n\n## This notebook did not run\n\n```\n'
        + message.replace("```", "'''") + "\n```")
    doc.cells.insert(0, cell)
    return doc


def _fits_a_socket(folder: Path) -> bool:
    return len(os.fsencode(folder / f"{_IPC_NAME}999-65535")) <= _SOCKET_PATH_MAX


def _private_folder() -> Path:
    """A new folder only this user can enter: under the temporary folder, or under /tmp where
    that one's path is too long for a socket (a deep TMPDIR)."""
    folder = Path(tempfile.mkdtemp(prefix="unirepclip-run-"))
    if os.name == "posix" and not _fits_a_socket(folder) and os.path.isdir("/tmp"):
        short = Path(tempfile.mkdtemp(prefix="urc-", dir="/tmp"))
        folder.rmdir()
        folder = short
    return folder


def _alive(km: Any) -> bool:
    proc = getattr(getattr(km, "provisioner", None), "process", None)
    return proc is not None and proc.poll() is None


def _quiet_kernel_death(record: logging.LogRecord) -> bool:
    """papermill's client logs a kernel that died mid-cell at ERROR, straight to the terminal (a
    second line after a stopped run's one line); the run reports it itself: as the notebook's
    error, or as the interruption."""
    return "Kernel died while waiting for execute reply" not in record.getMessage()


class PapermillEngine:
    """Runs a notebook with papermill in a fresh kernel (cwd: the notebook's folder, as in
    JupyterLab). ``kernel`` names a Jupyter kernel (default: this interpreter's, registered on
    open); ``cell_timeout`` bounds each cell in seconds."""

    def __init__(self, kernel: Optional[str] = None, progress: bool = True,
                 cell_timeout: Optional[int] = None):
        self.kernel, self.progress, self.cell_timeout = kernel, progress, cell_timeout
        self.runtime: Optional[Path] = None
        self._kernels: List[Any] = []
        self._lock = threading.Lock()  # execute may run in several threads at once
        self._started = 0
        self._environ: Dict[str, Optional[str]] = {}

    def open(self) -> "PapermillEngine":
        """Register the kernel, make the private folder, and set what the kernels inherit:
        tqdm.auto warns in every kernel without ipywidgets and then draws text bars, which is
        what a static report wants (the warning goes); Jupyter's runtime folder is the private
        one."""
        self.kernel = self.kernel or ensure_kernel()
        self.runtime = _private_folder()
        self._environ = {k: os.environ.get(k) for k in ("PYTHONWARNINGS", "JUPYTER_RUNTIME_DIR")}
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [self._environ["PYTHONWARNINGS"],
                                                              "ignore:IProgress not found"]))
        os.environ["JUPYTER_RUNTIME_DIR"] = str(self.runtime)
        return self

    def close(self) -> None:
        """End the kernels still running, remove the private folder, restore the environment."""
        self.stop_kernels()
        if self.runtime is not None:
            shutil.rmtree(self.runtime, ignore_errors=True)
            self.runtime = None
        for k, v in self._environ.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._environ = {}

    def _manager_class(self, log: Optional[Path]) -> type:
        """A kernel manager that remembers the kernels it starts and sends the kernel process's
        own stderr and stdout (its logging, not the notebook's output, which papermill reads
        from the kernel's messages) to ``log``: a kernel ended by a stopped run otherwise
        prints ZMQ tracebacks into the terminal."""
        from jupyter_client.manager import AsyncKernelManager
        started, lock = self._kernels, self._lock

        class RunKernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd, **kw):
                sink = open(log, "ab") if log is not None else None
                if sink is not None:
                    kw["stdout"] = kw["stderr"] = sink
                try:
                    await super()._async_launch_kernel(kernel_cmd, **kw)
                finally:
                    if sink is not None:
                        sink.close()  # the kernel process holds its own copy
                with lock:
                    started.append(self)

        return RunKernelManager

    def _kernel_config(self, name: str) -> Dict[str, Any]:
        # IPC sockets (files only this user can open) rather than localhost TCP, where the kernel
        # warns about unencrypted traffic; Windows has no IPC transport. A socket's path must fit
        # AF_UNIX's sun_path: where even the private folder's would not, TCP.
        rt = self.runtime
        transport = "ipc" if os.name == "posix" and (rt is None or _fits_a_socket(rt)) else "tcp"
        km: Dict[str, Any] = {"transport": transport}
        if rt is not None:
            km["connection_file"] = str(rt / f"kernel-{name}.json")
            if transport == "ipc":
                # A prefix of its own per kernel: jupyter_client numbers a kernel's sockets
                # from the first free name, and two kernels starting at once would pick the same.
                with self._lock:
                    self._started += 1
                    km["ip"] = str(rt / f"{_IPC_NAME}{self._started}")
        return km

    def execute(self, nb: Notebook, params: Dict[str, Any], out_ipynb: Path) -> Optional[str]:
        """Run ``nb`` with ``params`` into ``out_ipynb``; None on success, else a one-line error
        (the saved notebook then shows it)."""
        import nbformat
        import papermill
        from papermill.exceptions import PapermillExecutionError
        from traitlets.config import Config

        logging.getLogger("papermill").addFilter(_quiet_kernel_death)  # once: a set
        try:
            papermill.execute_notebook(
                str(nb.path), str(out_ipynb), parameters=params, kernel_name=self.kernel,
                language="python", cwd=str(nb.path.parent), progress_bar=self.progress,
                log_output=False, execution_timeout=self.cell_timeout,
                config=Config({"KernelManager": self._kernel_config(nb.name)}),
                kernel_manager_class=self._manager_class(self.kernel_log(nb.name)))
            return None
        except PapermillExecutionError as e:
            first = str(e.evalue).strip().splitlines()
            return f"{e.ename}: {first[0] if first else ''} (cell In [{e.exec_count}])"
        except Exception as e:  # a kernel that died or never started: still leave a report
            msg = f"{type(e).__name__}: {e}".strip() + self._log_tail(nb.name)
            partial = out_ipynb if out_ipynb.exists() else nb.path  # papermill may have saved some
            nbformat.write(error_notebook(partial, msg), str(out_ipynb))
            return msg.splitlines()[0]
        finally:
            with self._lock:
                self._kernels[:] = [k for k in self._kernels if _alive(k)]

    def kernel_log(self, name: str) -> Optional[Path]:
        """Where the kernel of notebook ``name`` logs (None without a private folder)."""
        return None if self.runtime is None else self.runtime / f"kernel-{name}.log"

    def _log_tail(self, name: str, lines: int = 5) -> str:
        log = self.kernel_log(name)
        try:
            tail = log.read_text(errors="replace").strip().splitlines()[-lines:] if log else []
        except OSError:
            tail = []
        return ("\nthe kernel's last words:\n" + "\n".join(tail)) if tail else ""

    def stop_kernels(self, grace_s: float = 3.0) -> None:
        """End the kernels still running (SIGTERM to each kernel's own process group, then
        SIGKILL)."""
        import signal
        procs = []
        with self._lock:
            kernels = list(self._kernels)
        for km in kernels:
            prov = getattr(km, "provisioner", None)
            if not _alive(km):
                continue
            pgid = getattr(prov, "pgid", None)
            procs.append((prov.process, pgid if pgid and pgid != os.getpgrp() else None))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc, pgid in procs:
                try:
                    if pgid:
                        os.killpg(pgid, sig)
                    elif proc.poll() is None:
                        proc.send_signal(sig)
                except OSError:
                    pass
            deadline = time.time() + grace_s
            for proc, _ in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.time()))
                except Exception:  # still alive: the next signal
                    pass
            if all(proc.poll() is not None for proc, _ in procs):
                break
        with self._lock:
            self._kernels.clear()
