import os
from pathlib import Path

# Under pytest-xdist (make test) the workers share the cores: each takes its share of torch's
# threads, and so do the processes it starts (kernels, torchrun ranks), or OpenMP threads spin
# against each other. Set before torch is imported.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import randomize_reparam_state
from unirepclip.cli import main

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("UNIREPCLIP_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES} (set UNIREPCLIP_FIXTURES)")
    return FIXTURES


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


_THREADS = torch.get_num_threads()  # this worker's share (set above, before torch loaded)


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every test starts and ends on this worker's thread count: a test that calls
    torch.set_num_threads (workbook.setup does) must not change the floats of the tests after it
    (a reduction over another number of threads sums in another order)."""
    torch.set_num_threads(_THREADS)
    yield
    torch.set_num_threads(_THREADS)


@pytest.fixture(scope="session")
def ci_reports(tmp_path_factory):
    """Every real notebook run once on the `ci` profile (the demo checkpoint, counts shrunk):
    ``(exit code, reports/ci folder)``. Shared by the schema, figure and browser tests, and under
    pytest-xdist by every worker: the first to need it runs it (holding a file lock in the
    workers' common temporary folder), the others wait for it and read its folder."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder above each worker's basetemp is the run's, shared
    out, done = root / "ci-reports", root / "ci-reports.exit-code"
    with FileLock(str(root / "ci-reports.lock")):
        if not done.exists():
            # two notebooks at once, as `make reports` runs them (and so tested on every run)
            code = main(["run", "--profile", "ci", "--notebooks-dir", str(REPO / "notebooks"),
                         "--output-dir", str(out), "--no-progress", "-q", "--jobs", "2"])
            done.write_text(str(code))
    return int(done.read_text()), out / "ci"


@pytest.fixture(scope="session")
def reparam_state():
    """``randomize_reparam_state(model, seed=0, *, scale=0.3, depthwise_std=None)`` from
    tests/helpers.py: non-trivial BN statistics, GRN and layer scales, in place."""
    return randomize_reparam_state
