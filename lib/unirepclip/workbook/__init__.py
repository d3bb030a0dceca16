"""The workbook: notebook parameters and profiles, the runner, reports and results, and the
notebooks' common first cell (:func:`setup`)."""
from unirepclip.workbook.setup import Loaded, load, setup  # noqa: F401
