"""Running notebooks into a report folder: the options (:mod:`.options`), the engine that executes
one notebook (:mod:`.engine`), the report folder's lock and state (:mod:`.folder`), what a notebook
ran with (:mod:`.provenance`), signals (:mod:`.signals`) and the run itself (:mod:`.runner`)."""
from unirepclip.workbook.run.engine import PapermillEngine, ensure_kernel  # noqa: F401
from unirepclip.workbook.run.folder import (  # noqa: F401
    HOLDER_FILE, LOCK_FILE, PARTIAL_DIR, SWEEP_FILE, RunLocked, folder_locked, read_manifest,
    report_folder)
from unirepclip.workbook.run.options import RunOptions  # noqa: F401
from unirepclip.workbook.run.provenance import STATUSES, NotebookRun, source_sha256  # noqa: F401
from unirepclip.workbook.run.runner import Plan, RunResult, plan, run  # noqa: F401
from unirepclip.workbook.run.signals import RunInterrupted  # noqa: F401
