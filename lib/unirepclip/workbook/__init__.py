"""The workbook layer: parameters and profiles (:mod:`.params`), running notebooks into a report
folder (:mod:`.run`), sweeps (:mod:`.sweep`), the report pages and manifest (:mod:`.report`), the
notebooks' results (:mod:`.results`) and their common first cell (:func:`setup`). The names below
load on first use: reading results or running the runner does not import torch."""
from unirepclip.lazy import lazy_exports

_API = {"Loaded": "setup", "load": "setup", "setup": "setup",
        "RunOptions": "run", "run": "run", "run_sweep": "sweep"}
__all__ = list(_API)
__getattr__, __dir__ = lazy_exports(
    __name__, {n: f"unirepclip.workbook.{m}" for n, m in _API.items()}, globals())
