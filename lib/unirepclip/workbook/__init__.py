"""The workbook layer: parameters and profiles (:mod:`.params`), running notebooks into a report
folder (:mod:`.run`), sweeps (:mod:`.sweep`), the report pages and manifest (:mod:`.report`), the
notebooks' results (:mod:`.results`) and their common first cell (:func:`setup`). The names below
load on first use: reading results or running the runner does not import torch."""
import importlib

_API = {"Loaded": "setup", "load": "setup", "setup": "setup",
        "RunOptions": "run", "run": "run", "run_sweep": "sweep"}
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f"unirepclip.workbook.{_API[name]}"), name)
    raise AttributeError(f"module 'unirepclip.workbook' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
