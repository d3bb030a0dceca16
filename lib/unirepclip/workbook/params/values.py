"""Parameter values as written: YAML scalars in profiles and ``-p key=value`` overrides, and the
one error every bad parameter ends in (:class:`ParameterError`, one line per problem)."""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence, Tuple

import yaml

__all__ = ["ParameterError", "YamlLoader", "parse_value", "parse_override", "load_yaml"]


class ParameterError(ValueError):
    """Bad profile, notebook or command-line parameters, found before any notebook runs.
    ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str], context: str = ""):
        self.problems = list(problems)
        head = f"invalid parameters{' for ' + context if context else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``1e-3`` is a float, YAML 1.1 reads a string)
    and mappings that refuse a repeated key (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hashable = key in seen or True
            except TypeError:
                hashable = False
            if hashable and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} is given twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            if hashable:
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."))
YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                           lambda loader, node: loader.construct_mapping(node))


def load_yaml(text: str) -> Any:
    """A YAML document with :class:`YamlLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=YamlLoader)


def parse_value(text: str) -> Any:
    """A ``-p`` value: a YAML scalar (or flow list/map); empty text is None."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text  # e.g. an unbalanced quote: keep the text, the type check will judge it


def parse_override(item: str) -> Tuple[Optional[str], str, Any]:
    """``"key=value"`` or ``"NN_name.key=value"`` -> ``(notebook or None, key, value)``."""
    if "=" not in item:
        raise ParameterError([f"-p {item!r}: expected key=value"])
    key, _, text = item.partition("=")
    key = key.strip()
    scope = None
    if "." in key:
        scope, _, key = key.partition(".")
    if not key.isidentifier() or (scope is not None and not scope):
        raise ParameterError([f"-p {item!r}: {key!r} is not a parameter name"])
    return scope, key, parse_value(text)
