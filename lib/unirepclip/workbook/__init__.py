"""The workbook: notebook parameters and profiles, the runner, reports and results, and the
notebooks' common first cell (:func:`setup`, which loads the model stack on first use: reading
results or running the runner does not import torch)."""
import importlib

_SETUP_API = ("Loaded", "load", "setup")
__all__ = list(_SETUP_API)


def __getattr__(name):
    if name in _SETUP_API:
        return getattr(importlib.import_module("unirepclip.workbook.setup"), name)
    raise AttributeError(f"module 'unirepclip.workbook' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SETUP_API))
