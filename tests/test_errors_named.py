"""Errors that name the thing at fault (issue 27): a file that is not UTF-8 (which file, which
line, which byte, what encoding is expected) and a cache folder that cannot be written."""
from __future__ import annotations

import pytest

from unirepclip.data.files import CaptionDataset, read_classnames
from unirepclip.features import FeatureCache
from unirepclip.vocab import folder_problem
from unirepclip.workbook import params

LATIN1 = "cat\ncaf\xe9\ndog\n".encode("latin-1")  # 0xe9 on line 2, column 4


def test_a_classnames_file_that_is_not_utf8_names_file_line_and_byte(tmp_path):
    path = tmp_path / "names.txt"
    path.write_bytes(LATIN1)
    with pytest.raises(ValueError) as e:
        read_classnames(path)
    assert str(e.value) == (f"class-name file {path}, line 2: byte 0xe9 at column 4 is not "
                            "UTF-8; save the file as UTF-8")
    path.write_bytes("\ufeffcat\ncafé\n".encode("utf-8"))  # UTF-8 with a byte-order mark is fine
    assert read_classnames(path) == ["cat", "café"]


@pytest.mark.parametrize("suffix, text", [
    (".csv", "image,caption\na.png,un caf\xe9\n"),
    (".jsonl", '{"image": "a.png", "caption": "ok"}\n{"image": "a.png", "caption": "caf\xe9"}\n'),
])
def test_a_captions_file_that_is_not_utf8_names_file_and_line(tmp_path, suffix, text):
    path = tmp_path / f"caps{suffix}"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"caption file {path}, line 2: byte 0xe9 at column "
                                         r"\d+ is not UTF-8; save the file as UTF-8"):
        CaptionDataset(path)


def test_a_cache_folder_that_cannot_be_written_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"feature cache folder /proc/self is not writable: no "
                                         r"file can be created in /proc/self"):
        FeatureCache("/proc/self")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=f"{blocker} is a file, not a folder"):
        FeatureCache(blocker / "cache")
    assert FeatureCache(tmp_path / "new" / "cache").root.name == "cache"  # created on demand
    assert not (tmp_path / "new").exists()  # the check leaves nothing behind
    assert folder_problem(tmp_path) is None and list(tmp_path.iterdir()) == [blocker]


def test_the_dry_run_refuses_an_unwritable_cache_dir():
    nbs = [nb for nb in params.inspect_notebooks(
        params.default_notebooks_dir()) if nb.name == "02_zeroshot"]
    with pytest.raises(params.ParameterError, match="parameter 'cache_dir' is no writable "
                                                    "folder: no file can be created in /proc/self"):
        params.resolve_parameters(nbs, params.load_profile("demo"),
                                  params.Request(("cache_dir=/proc/self/cache",)))
