"""SIGINT and SIGTERM during a run: they stop it as :class:`RunInterrupted`, except inside a block
that must not be cut in two (moving outputs into place, writing the index), where the signal waits
for the block's end. A :class:`SignalGuard` is an object a run (or a sweep) opens and closes."""
from __future__ import annotations

import ast
import contextlib
import os
import signal
import threading
from typing import Any, Dict, Iterator, Optional

__all__ = ["RunInterrupted", "SignalGuard"]


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the runner; ``signal`` is its name."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal = signal_name


def _in_ast(frame: Any) -> bool:
    """Whether the interrupted code is the standard library's ``ast`` module (parse,
    literal_eval)."""
    while frame is not None:
        if frame.f_code.co_filename == ast.__file__:
            return True
        frame = frame.f_back
    return False


class SignalGuard:
    """Installs the run's SIGINT/SIGTERM handlers on :meth:`open` and puts back the ones it found
    on :meth:`close` (a sweep's, when a run is one setting of it). From a thread other than the
    main one it does nothing: signals reach only the main thread."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: Optional[str] = None
        self._saved: Dict[int, Any] = {}

    def _stop(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._depth:
            self._pending = name
            return
        if _in_ast(frame):
            # CPython 3.11 leaves its AST converter's recursion count wrong when an exception
            # cuts ast.parse short, and every later parse in the process then fails
            # ("AST constructor recursion depth mismatch"): the signal comes again in 50 ms
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        raise RunInterrupted(name)

    def open(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._saved[s] = signal.signal(s, self._stop)
        return self

    def close(self) -> None:
        for s, h in self._saved.items():
            signal.signal(s, h)
        self._saved = {}

    def __enter__(self) -> "SignalGuard":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """A block a signal must not cut in two: one that comes meanwhile is raised at its end."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self._pending:
            name, self._pending = self._pending, None
            raise RunInterrupted(name)
