"""What ``import unirepclip`` costs and what it registers. Imports are process-wide, so each case
runs in a fresh interpreter."""
import json
import subprocess
import sys

_REPORT = """
import json, sys
print(json.dumps({"torch": "torch" in sys.modules, "open_clip": "open_clip" in sys.modules}))
"""

_REGISTERED = """
import json, sys
import timm, open_clip, open_clip.timm_model
print(json.dumps({"towers": timm.list_models("unireplknet_*"),
                  "configs": [m for m in open_clip.list_models() if "UniRepLKNet" in m],
                  "open_clip_has_timm": open_clip.timm_model.timm is not None}))
"""


def _run(code):
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_the_runner_results_and_command_line_load_without_torch():
    proc = _run("import unirepclip, unirepclip.workbook.results, unirepclip.workbook.run, "
                "unirepclip.workbook.report, unirepclip.workbook.sweep, unirepclip.cli" + _REPORT)
    assert _result(proc) == {"torch": False, "open_clip": False}


def test_towers_and_configs_register_whichever_is_imported_first():
    cases = {
        # a notebook's first import: open_clip and timm load inside the package's own imports
        # (the hooks must not import a module that is half loaded, nor hide timm from open_clip)
        "from unirepclip import features, workbook\n": None,
        # the libraries first, the package after: registered at once
        "import timm, open_clip\nimport unirepclip\n": None,
        # the package first, the libraries later, as a user of timm's registry would
        "import unirepclip\n": None,
    }
    procs = {first: _run(first + _REGISTERED) for first in cases}
    for first, proc in procs.items():
        got = _result(proc)
        assert "unireplknet_l" in got["towers"] and "unireplknet_demo" in got["towers"], first
        assert {"CLIP-UniRepLKNet-L", "UniRepLKNet-Demo"} <= set(got["configs"]), first
        assert got["open_clip_has_timm"], first


def test_workbook_setup_stays_the_function_after_its_module_is_imported():
    """The notebooks call workbook.setup(...); importing the module that defines it (as a rerun
    of the first cell or another import does) must not turn the name into a module."""
    proc = _run("from unirepclip import workbook; import unirepclip.workbook.session, "
                "unirepclip.workbook.run, unirepclip.workbook.sweep; "
                "assert callable(workbook.setup) and callable(workbook.run_sweep), workbook.setup; "
                "assert workbook.RunOptions.__name__ == 'RunOptions'; print('ok')")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.strip() == "ok", err
