"""open_clip's model names and pretrained tags, read without importing open_clip (or torch).

The workbook checks ``model_name`` and ``checkpoint`` before anything loads (the dry run
included), in a process that must stay torch-free; importing ``open_clip`` imports torch. So this
module reads what open_clip itself reads, from its installed files: the architecture configs
(``open_clip/model_configs/*.json``, whose stems are :func:`open_clip.list_models`) and the
pretrained tags declared in ``open_clip/pretrained.py`` (parsed, never executed). The factory
builds and loads through open_clip itself; ``tests/test_openclip_models.py`` holds these lists
equal to open_clip's own :func:`open_clip.list_models` and
:func:`open_clip.list_pretrained_tags_by_model`.

Schemas: ``hf-hub:<org>/<repo>`` and ``local-dir:<folder>`` (open_clip's) name a model whose
config (``open_clip_config.json``) and weights come from that repository or folder.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

__all__ = ["HF_HUB", "LOCAL_DIR", "schema_of", "openclip_dir", "openclip_model_names",
           "openclip_config", "pretrained_tags", "local_dir_problem"]

HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
CONFIG_FILE = "open_clip_config.json"  # open_clip.constants.HF_CONFIG_NAME


def schema_of(name: str) -> Optional[str]:
    """``"hf-hub"``, ``"local-dir"`` or None (a plain name), as open_clip's ``parse_model_name``."""
    if name.startswith(LOCAL_DIR):
        return "local-dir"
    if name.startswith(HF_HUB):
        return "hf-hub"
    return None


@functools.lru_cache(maxsize=1)
def openclip_dir() -> Optional[Path]:
    """The installed open_clip package's folder (found, not imported); None if not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def _configs() -> Dict[str, Path]:
    root = openclip_dir()
    if root is None:
        return {}
    return {p.stem: p for p in sorted((root / "model_configs").glob("*.json"))}


def openclip_model_names() -> Tuple[str, ...]:
    """open_clip's built-in architecture names (its ``model_configs``), sorted."""
    return tuple(sorted(_configs()))


def openclip_config(name: str) -> Optional[dict]:
    """The config of a built-in open_clip name, or of a ``local-dir:`` folder (its
    ``open_clip_config.json``'s ``model_cfg``); None when there is none to read."""
    if schema_of(name) == "local-dir":
        path = Path(name[len(LOCAL_DIR):]).expanduser() / CONFIG_FILE
    else:
        path = _configs().get(name)
    try:
        cfg = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    if isinstance(cfg, dict) and "model_cfg" in cfg:
        cfg = cfg["model_cfg"]
    return cfg if isinstance(cfg, dict) else None


def local_dir_problem(name: str) -> Optional[str]:
    """Why ``local-dir:<folder>`` cannot be built (no folder, no config), or None."""
    folder = Path(name[len(LOCAL_DIR):]).expanduser()
    if not name[len(LOCAL_DIR):]:
        return f"{name!r}: no folder after 'local-dir:'"
    if not folder.is_dir():
        return f"{name!r}: the folder {folder} does not exist"
    if not (folder / CONFIG_FILE).is_file():
        return (f"{name!r}: {folder} has no {CONFIG_FILE} (open_clip's save_for_hf writes one "
                f"beside the weights)")
    return None


def _keywords(node: ast.AST, names: Dict[str, ast.AST]) -> Optional[Tuple[str, ...]]:
    """The tag names of one model's entry: ``dict(tag=...)`` or ``{"tag": ...}`` or a name
    bound to one of those at module level."""
    if isinstance(node, ast.Name):
        node = names.get(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return tuple(k.arg for k in node.keywords if k.arg)
    if isinstance(node, ast.Dict):
        return tuple(k.value for k in node.keys if isinstance(k, ast.Constant))
    return None


def _quick_gelu(node: ast.AST, names: Dict[str, ast.AST]) -> Dict[str, bool]:
    if isinstance(node, ast.Name):
        node = names.get(node.id)
    pairs = []
    if isinstance(node, ast.Call):
        pairs = [(k.arg, k.value) for k in node.keywords if k.arg]
    elif isinstance(node, ast.Dict):
        pairs = [(k.value, v) for k, v in zip(node.keys, node.values)
                 if isinstance(k, ast.Constant)]
    out = {}
    for tag, value in pairs:
        out[tag] = isinstance(value, ast.Call) and any(
            k.arg == "quick_gelu" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in value.keywords)
    return out


@functools.lru_cache(maxsize=1)
def _pretrained() -> Optional[Dict[str, Tuple[str, ...]]]:
    """``{model: tags}`` from open_clip's ``pretrained.py`` (its ``_PRETRAINED`` table, with the
    ``-quickgelu`` copies open_clip derives from the tags marked ``quick_gelu=True``); None when
    the file cannot be read that way (another open_clip release: then tags are checked on load)."""
    root = openclip_dir()
    try:
        tree = ast.parse((root / "pretrained.py").read_text())
    except (OSError, SyntaxError, TypeError):
        return None
    names: Dict[str, ast.AST] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = stmt.value
    table = names.get("_PRETRAINED")
    if not isinstance(table, ast.Dict):
        return None
    out: Dict[str, Tuple[str, ...]] = {}
    quick: Dict[str, Tuple[str, ...]] = {}
    for key, value in zip(table.keys, table.values):
        tags = _keywords(value, names) if isinstance(key, ast.Constant) else None
        if tags is None:
            return None
        out[key.value] = tags
        marked = tuple(t for t, q in _quick_gelu(value, names).items() if q)
        if marked:
            quick[key.value + "-quickgelu"] = marked
    out.update(quick)
    return out


def pretrained_tags(name: str) -> Optional[Tuple[str, ...]]:
    """The pretrained tags open_clip knows for the model ``name`` (empty if none); None when
    open_clip's table could not be read (the tag is then checked when the model loads)."""
    table = _pretrained()
    if table is None:
        return None
    return tuple(table.get(name, ()))
