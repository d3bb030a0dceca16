"""One options object for :func:`~unirepclip.workbook.run.runner.run`,
:func:`~unirepclip.workbook.sweep.runner.run_sweep` and the command line, checked where it is
built: a bad value is one line before anything runs."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from unirepclip.workbook.params import ParameterError, default_notebooks_dir

__all__ = ["RunOptions"]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a profile.

    ``output_dir`` defaults to ``reports/`` beside ``notebooks_dir`` (itself ``./notebooks`` or
    the repository's); ``only`` picks notebooks; ``hide_code`` renders HTML without code cells;
    ``kernel`` names a Jupyter kernel instead of this interpreter's; ``cell_timeout`` (seconds)
    bounds each cell; ``dry_run`` checks everything that can be checked without running;
    ``wait`` waits for another run that holds the folder instead of refusing; ``resume`` keeps
    each notebook whose outputs are complete and current; ``sweep`` are ``--sweep`` flags and
    ``jobs`` how many notebooks (a plain run) or settings (a sweep) run at once; ``engine``
    runs one notebook (default: papermill,
    :class:`~unirepclip.workbook.run.engine.PapermillEngine`); ``executor`` runs a sweep's
    settings here (``local``) or as one Slurm job array (``slurm``, see
    :mod:`unirepclip.workbook.sweep.slurm`), ``slurm`` holds the ``--partition`` ... flags (over
    the profile's ``slurm:`` section) and ``detach`` returns once the array is submitted."""

    profile: Union[str, os.PathLike] = "demo"
    overrides: Sequence[str] = ()
    only: Optional[Sequence[str]] = None
    output_dir: Optional[Union[str, os.PathLike]] = None
    notebooks_dir: Optional[Union[str, os.PathLike]] = None
    hide_code: bool = False
    kernel: Optional[str] = None
    progress: bool = True
    cell_timeout: Optional[int] = None
    dry_run: bool = False
    quiet: bool = False
    command: Optional[Sequence[str]] = None
    wait: bool = False
    resume: bool = False
    sweep: Sequence[str] = ()
    jobs: int = 1
    engine: Any = None
    executor: str = "local"
    slurm: Optional[Mapping[str, Any]] = None
    detach: bool = False

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ParameterError(problems)

    def problems(self) -> List[str]:
        """Every bad option, one line each."""
        out = []
        if self.cell_timeout is not None and (isinstance(self.cell_timeout, bool) or not
                                              isinstance(self.cell_timeout, int) or
                                              self.cell_timeout <= 0):
            out.append(f"--cell-timeout {self.cell_timeout}: must be a whole number of seconds "
                       "above 0 (leave it out for no limit)")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            out.append(f"--jobs {self.jobs}: must be at least 1")
        for name in ("output_dir", "notebooks_dir"):
            v = getattr(self, name)
            if v is not None and not str(v).strip():
                out.append(f"--{name.replace('_', '-')} '': an empty folder name; leave it out "
                           "for the default")
        out += self._executor_problems()
        if self.kernel is not None and not str(self.kernel).strip():
            out.append("--kernel '': an empty kernel name; leave it out for this interpreter's")
        return out

    def _executor_problems(self) -> List[str]:
        from unirepclip.workbook.params.slurm import flag_problems
        if self.executor not in ("local", "slurm"):
            return [f"--executor {self.executor}: must be local or slurm"]
        given = sorted(k for k, v in (self.slurm or {}).items() if v is not None)
        if self.executor == "local":
            out = [f"--{given[0].replace('_', '-')}: a Slurm setting, given without "
                   "--executor slurm"] if given else []
            return out + (["--detach: only with --executor slurm"] if self.detach else [])
        out = flag_problems(dict(self.slurm or {}))
        if self.jobs != 1:
            out.append(f"--jobs {self.jobs} with --executor slurm: every setting is a task of "
                       "its own; bound how many run at once with slurm.parallelism")
        return out

    @property
    def notebooks_path(self) -> Path:
        return Path(self.notebooks_dir) if self.notebooks_dir is not None \
            else default_notebooks_dir()

    @property
    def output_root(self) -> Path:
        return Path(self.output_dir) if self.output_dir is not None \
            else self.notebooks_path.parent / "reports"

    @property
    def full_command(self) -> List[str]:
        import sys
        return list(self.command) if self.command is not None else [sys.executable, *sys.argv]

    def replace(self, **changes: Any) -> "RunOptions":
        return dataclasses.replace(self, **changes)
