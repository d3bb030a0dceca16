"""The workbook layer: parameters and profiles (:mod:`.params`), running notebooks into a report
folder (:mod:`.run`), sweeps (:mod:`.sweep`), the report pages and manifest (:mod:`.report`), the
notebooks' results (:mod:`.results`) and their common first cell (:func:`setup`, in
:mod:`.session`). The names below
load on first use: reading results or running the runner does not import torch."""
from unirepclip.lazy import lazy_exports

# The notebooks' first cell is workbook.setup(...), from the module session.py: a submodule named
# like the function would replace it on the package once imported. run() and run_sweep() live in
# workbook.run and workbook.sweep.
_API = {"Loaded": "session", "load": "session", "setup": "session",
        "RunOptions": "run", "run_sweep": "sweep"}
__all__ = list(_API)
__getattr__, __dir__ = lazy_exports(
    __name__, {n: f"unirepclip.workbook.{m}" for n, m in _API.items()}, globals())
