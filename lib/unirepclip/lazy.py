"""Names a package exports that load their module on first use (PEP 562), so importing the
package stays light: ``unirepclip`` does not import torch until a model name is used."""
from __future__ import annotations

import importlib
from typing import Any, Callable, List, Mapping, Tuple

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, str], namespace: Mapping[str, Any]
                 ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``modules`` is read from the
    module it maps to (a full module name) when first asked for; ``namespace`` is the package's
    ``globals()``."""
    def __getattr__(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(modules))

    return __getattr__, __dir__
