"""Every selected notebook's parameters, resolved from their layers and checked before any
notebook runs. The layers, later wins: the notebook's own defaults, the profile's ``common``, the
profile's ``notebooks.<NN_name>``, a sweep setting's values, ``-p key=value`` (every notebook that
has ``key``), ``-p NN_name.key=value`` (that notebook only). Every problem is collected into one
:class:`~unirepclip.workbook.params.values.ParameterError`: a key no notebook declares (with close
names), a value of the wrong type or out of its declared range (naming where it came from), a
placeholder path still in place, a file that is not there."""
from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from unirepclip.models.params import KEY_OF, follow_key
from unirepclip.workbook.params.checks import PLACEHOLDER_PREFIX, check_value, resolve_path
from unirepclip.workbook.params.notebooks import Notebook, default_value
from unirepclip.workbook.params.values import ParameterError, parse_override
from unirepclip.workbook.params.vocabulary import RESERVED, vocabulary

__all__ = ["Request", "resolve_parameters", "expand_fields", "overrides_dict"]

_FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclasses.dataclass(frozen=True)
class Request:
    """What a caller asks for beyond the profile: ``-p`` overrides, one sweep setting
    (``{"key" or "NN_name.key": value}``, with where each was written: ``--sweep`` or a profile
    file), and whether ``/path/to/...`` placeholders and missing files are problems yet."""

    overrides: Sequence[str] = ()
    setting: Optional[Mapping[str, Any]] = None
    setting_sources: Optional[Mapping[str, str]] = None
    check_placeholders: bool = True


def expand_fields(value: Any, fields: Mapping[str, Any]) -> Any:
    """``value`` with each ``{name}`` whose name is in ``fields`` replaced by that value (strings
    only; other braces stay): ``data_dir: /data/{dataset}`` follows a swept ``dataset``."""
    if not isinstance(value, str) or "{" not in value:
        return value
    return _FIELD_RE.sub(lambda m: str(fields[m.group(1)]) if m.group(1) in fields
                         else m.group(0), value)


def overrides_dict(overrides: Sequence[str]) -> Dict[str, Any]:
    """``-p`` items as ``{"key" or "NN_name.key": value}`` (for the manifest)."""
    out = {}
    for item in overrides:
        scope, k, v = parse_override(item)
        out[f"{scope}.{k}" if scope else k] = v
    return out


def _unknown(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class _Layers:
    """The values each layer gives, keyed per notebook, with where each came from."""

    def __init__(self, notebooks: Sequence[Notebook], profile: Mapping[str, Any]):
        self.by_name = {nb.name: nb for nb in notebooks}
        self.declared = sorted({p for nb in notebooks for p in nb.parameters})
        self.problems: List[str] = [p for nb in notebooks for p in nb.problems]
        self.sources = profile.get("sources", {})
        self.pfile = str(profile.get("path", profile.get("name", "profile")))
        self.all: List[Tuple[Dict[str, Any], Dict[str, str]]] = []  # (values, sources) in order
        self.per_nb: List[Dict[str, Tuple[Dict[str, Any], Dict[str, str]]]] = []
        self.swept: set = set()

    def key_problem(self, label: str, scope: Optional[str], k: str) -> Optional[str]:
        """Why ``scope.k`` (no scope: any notebook's ``k``) names no notebook parameter."""
        if k in RESERVED:
            return (f"{label}: set by the runner (use --output-dir)" if label.startswith("-p ")
                    else f"{label} is set by the runner and cannot be given")
        if not scope:
            return None if k in self.declared else (
                f"{label}: no notebook has a parameter {k!r}" + _unknown(k, self.declared))
        if scope not in self.by_name:
            return f"{label}: no notebook {scope!r}" + _unknown(scope, list(self.by_name))
        if k not in self.by_name[scope].parameters:
            return (f"{label}: {scope} has no parameter {k!r}"
                    + _unknown(k, list(self.by_name[scope].parameters)))
        return None

    def add(self, items: Mapping[str, Any], label_of, source_of) -> Tuple[dict, dict]:
        """One layer of ``{"key" or "NN_name.key": value}``; returns (all, per notebook)."""
        every: Tuple[Dict[str, Any], Dict[str, str]] = ({}, {})
        per: Dict[str, Tuple[Dict[str, Any], Dict[str, str]]] = {}
        for item, v in items.items():
            scope, _, k = item.rpartition(".")
            bad = self.key_problem(label_of(item), scope or None, k)
            if bad:
                self.problems.append(bad)
                continue
            target = per.setdefault(scope, ({}, {})) if scope else every
            target[0][k], target[1][k] = v, source_of(item)
        self.all.append(every)
        self.per_nb.append(per)
        return every, per

    def layer_of(self, nb_name: str, k: str) -> Optional[int]:
        """The index of the last layer that gives notebook ``nb_name`` its ``k`` (None: its
        own default)."""
        last = None
        for i, (every, per) in enumerate(zip(self.all, self.per_nb)):
            if k in every[0] or k in per.get(nb_name, ({}, {}))[0]:
                last = i
        return last

    def values_for(self, nb: Notebook) -> Dict[str, Tuple[Any, str]]:
        out: Dict[str, Tuple[Any, str]] = {}
        for every, per in zip(self.all, self.per_nb):
            for vals, srcs in (every, per.get(nb.name, ({}, {}))):
                out.update({k: (v, srcs[k]) for k, v in vals.items()})
        return out


def _profile_layers(layers: _Layers, profile: Mapping[str, Any]) -> None:
    src = layers.sources
    layers.add(profile.get("common", {}), lambda k: f"{src.get(f'common.{k}', layers.pfile)}: "
               f"common.{k}", lambda k: src.get(f"common.{k}", layers.pfile))
    items = {}
    for nb_name, values in profile.get("notebooks", {}).items():
        if nb_name not in layers.by_name:
            layers.problems.append(f"{layers.pfile}: notebooks.{nb_name}: no notebook "
                                   f"{nb_name}.ipynb" + _unknown(nb_name, list(layers.by_name)))
            continue
        items.update({f"{nb_name}.{k}": v for k, v in values.items()})
    layers.add(items, lambda i: f"{src.get(i, layers.pfile)}: notebooks.{i}",
               lambda i: src.get(i, layers.pfile))


def _request_layers(layers: _Layers, request: Request) -> None:
    where = dict(request.setting_sources or {})
    label = (lambda i: f"--sweep {i}" if where.get(i, "--sweep") == "--sweep"
             else f"{where[i]}: sweep {i}")
    cli: Dict[str, Any] = {}
    for item in request.overrides:
        try:
            scope, k, v = parse_override(item)
        except ParameterError as e:
            layers.problems.extend(e.problems)
            continue
        cli[f"{scope}.{k}" if scope else k] = v

    def clash(item: str) -> bool:  # the same parameter of the same notebook(s) in -p
        scope, _, k = item.rpartition(".")
        return k in cli or any(
            c.rpartition(".")[2] == k and (not scope or c.rpartition(".")[0] == scope)
            for c in cli)

    for item in request.setting or {}:
        if clash(item):
            layers.problems.append(f"{label(item)}: -p {item.rpartition('.')[2]} is given too; a "
                                   "swept parameter takes its values from the sweep only")
    layers.add({i: v for i, v in (request.setting or {}).items() if not clash(i)}, label, label)
    layers.swept = {i.rpartition(".")[2] for i in request.setting or {}}
    layers.add(cli, lambda i: f"-p {i}", lambda i: f"-p {i}")


def _follow_the_model(nb: Notebook, values: Dict[str, Any], out: Dict[str, Any],
                      layers: _Layers) -> None:
    """A results key (``model_key`` ...) given in a layer below its model's (the profile's
    ``demo`` under ``-p model_name=ViT-B-32``) follows the model when it is another known
    model's own key (:func:`unirepclip.models.params.follow_key`); one given with or after the
    model is kept as given."""
    for key, name in KEY_OF:
        if key not in nb.parameters or name not in values:
            continue
        at_key, at_name = layers.layer_of(nb.name, key), layers.layer_of(nb.name, name)
        if at_name is None or (at_key is not None and at_key >= at_name):
            continue
        new = follow_key(values[key], values[name])
        if new != values[key]:
            values[key] = out[key] = new


def _resolve_one(nb: Notebook, given: Dict[str, Tuple[Any, str]], layers: _Layers,
                 request: Request) -> Dict[str, Any]:
    """One notebook's given values, checked and with paths made absolute."""
    vocab = vocabulary()
    fields = {k: v for k, (v, _) in given.items() if k in layers.swept
              and isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    values = {k: default_value(p) for k, p in nb.parameters.items() if k not in RESERVED}
    literal = {k for k, p in nb.parameters.items() if k in given or values.get(k) != p.default}
    out: Dict[str, Any] = {}
    for k, (v, src) in given.items():
        if k in nb.parameters and k not in RESERVED:
            base = Path.cwd() if src.startswith(("-p ", "--sweep ")) else Path(
                src.split(": sweep ")[0]).parent
            v = expand_fields(v, fields)
            out[k] = resolve_path(vocab[k].range if k in vocab else None,
                                  nb.parameters[k].coerce(v), base)
    values.update(out)
    _follow_the_model(nb, values, out, layers)
    for k, p in nb.parameters.items():
        if k in RESERVED or k not in literal:
            continue  # reserved, or a default the runner cannot read as a value
        src = given[k][1] if k in given else "the notebook's default"
        msg = p.check(values[k]) if k in given else None
        if msg is None and k in given and request.check_placeholders and isinstance(
                values[k], str) and values[k].startswith(PLACEHOLDER_PREFIX):
            msg = (f"is still the placeholder {values[k]!r}; edit the profile or pass "
                   f"-p {k}=...")
        if msg is None:
            msg = check_value(vocab.get(k), values[k], values,
                              check_paths=k in given and request.check_placeholders)
        if msg:
            layers.problems.append(f"{nb.name}: parameter {k!r} {msg} (from {src})")
    return out


def resolve_parameters(notebooks: Sequence[Notebook], profile: Mapping[str, Any],
                       request: Request = Request(),
                       selected: Optional[Sequence[Notebook]] = None) -> Dict[str, Dict[str, Any]]:
    """``{notebook: {name: value}}`` for every selected notebook: the values the profile, the
    setting or ``-p`` set (the notebook's own defaults apply to the rest), checked; raises
    :class:`ParameterError` listing every problem."""
    layers = _Layers(notebooks, profile)
    _profile_layers(layers, profile)
    _request_layers(layers, request)
    resolved = {nb.name: _resolve_one(nb, layers.values_for(nb), layers, request)
                for nb in (notebooks if selected is None else selected)}
    if layers.problems:
        # De-duplicate, keeping order (a bad -p value shows once per notebook that has it).
        raise ParameterError(list(dict.fromkeys(layers.problems)),
                             f"profile {profile.get('name')!r}")
    return resolved
