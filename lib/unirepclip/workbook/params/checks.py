"""One value of one notebook checked against its declaration: the notebook's type, then the
vocabulary's range (bounded by the notebook's model where it depends on it), the checks against
the notebook's other values, and for files and folders, that they are there."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from unirepclip.vocab import Param, Range, folder_problem

__all__ = ["PLACEHOLDER_PREFIX", "finite", "check_value", "resolve_path", "has_schema"]

PLACEHOLDER_PREFIX = "/path/to/"
_SCHEMA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def finite(value: Any) -> bool:
    """False for a NaN or infinity anywhere in ``value`` (strict JSON has no spelling for them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    return True


def has_schema(value: str) -> bool:
    """``hf-hub:...``, a URL: a value no folder makes relative."""
    return bool(_SCHEMA_RE.match(value)) and not (len(value) > 1 and value[1] == ":")


def _reads_as_path(rng: Range, value: Any) -> bool:
    return (bool(rng.path) and isinstance(value, str) and bool(value) and not rng.is_name(value)
            and not (rng.path_suffix and not value.endswith(rng.path_suffix))
            and not has_schema(value))


def resolve_path(rng: Optional[Range], value: Any, base: Path) -> Any:
    """A relative path value made absolute against ``base`` (where it was written); names,
    schemas, ``~user`` and placeholders as they are."""
    if rng is None or not _reads_as_path(rng, value):
        return value
    if value.startswith("~"):
        return os.path.expanduser(value)
    if os.path.isabs(value) or value.startswith(PLACEHOLDER_PREFIX):
        return value
    return str((base / value).resolve())


def _path_problem(rng: Range, value: Any, values: Mapping[str, Any]) -> Optional[str]:
    """Why a path value names nothing usable (None: it does, or cannot be told before running)."""
    if value is None:
        return None
    if value == "":
        return None if rng.empty else f"must be {rng.describe()}, got ''"
    if not _reads_as_path(rng, value):
        if rng.path_suffix and isinstance(value, str) and not rng.is_name(value) \
                and not has_schema(value):
            return f"must be {rng.describe()}, got {value!r}"
        return None
    if value.startswith(PLACEHOLDER_PREFIX):
        return None
    if rng.path == "out":
        problem = folder_problem(value)
        return None if problem is None else f"is no writable folder: {problem}"
    fields = {k: v for k, v in values.items() if isinstance(v, (str, int)) and v != ""}
    path = _FIELD_RE.sub(lambda m: str(fields.get(m.group(1), m.group(0))), value)
    if "{" in path:
        return None  # a field the notebook fills in itself
    exists = os.path.isfile(path) if rng.path == "file" else os.path.isdir(path)
    if exists:
        return None
    alts = rng.accepted_names()
    names = f"; or one of {', '.join(alts)}" if alts else ""
    empty = f"; or '' ({rng.empty})" if rng.empty else ""
    what = "file" if rng.path == "file" else "folder"
    return f"names no {what} ({path} does not exist){names}{empty}"


def check_value(decl: Optional[Param], value: Any, values: Mapping[str, Any],
                check_paths: bool = True) -> Optional[str]:
    """Why ``value`` is not acceptable for ``decl`` in a notebook whose values are ``values``
    (None: it is). The notebook's own type check comes first (see
    :meth:`~unirepclip.workbook.params.notebooks.NotebookParameter.check`)."""
    if not finite(value):
        return f"must be a finite number, got {value!r}"
    if decl is None:
        return None
    rng = decl.range_for(values)
    if rng.path:
        msg = _path_problem(rng, value, values) if check_paths else None
    else:
        msg = rng.check(value)
    if msg is None and decl.relation is not None:
        msg = decl.relation(value, values)
    return msg
