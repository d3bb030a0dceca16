"""unirepclip: a reproducible research workbook for CLIP-UniRepLKNet-L.

Importing the package is light: it loads neither torch nor open_clip. The model API below loads
on first use (``unirepclip.create_model_and_transforms`` imports :mod:`unirepclip.models`), and the
UniRepLKNet towers are in timm's registry, and the package's model configs in open_clip's, as soon
as timm or open_clip is imported, before or after this package (wrapt's post-import hooks). So
``import unirepclip, timm; timm.create_model("unireplknet_l")`` works, while a process that only
reads results or parameters (the runner, a report, ``unirepclip run --help``) starts in a blink.

Layers, from the bottom (a layer imports only the layers below it): ``utils`` < ``models`` <
``data`` < ``features`` < ``eval`` < ``analysis`` < ``viz`` < ``training`` < ``workbook`` < ``cli``.
"""
import importlib
import sys

import wrapt

from unirepclip.lazy import lazy_exports

__version__ = "0.1.0"

# the model API, from unirepclip.models
_MODEL_API = ("CheckpointError", "CheckpointMismatchError", "create_model",
              "create_model_and_transforms", "get_model_config", "get_tokenizer",
              "inspect_checkpoint", "list_models", "register_model_configs")
__all__ = list(_MODEL_API)
__getattr__, __dir__ = lazy_exports(__name__, {n: "unirepclip.models" for n in _MODEL_API},
                                    globals())


def _register_towers(_timm) -> None:
    """timm was imported: the tower module's ``@register_model`` entries join its registry."""
    if "unirepclip.models.unireplknet" not in sys.modules:  # not while it imports timm itself
        importlib.import_module("unirepclip.models.unireplknet")


def _register_configs(_open_clip) -> None:
    """open_clip was imported: the package's model configs join its list."""
    importlib.import_module("unirepclip.models").register_model_configs()


# Both hooks import only what the imported library has finished loading (the tower module needs
# torch and timm, the configs only open_clip), so they are safe inside another package's import.
wrapt.register_post_import_hook(_register_towers, "timm")
wrapt.register_post_import_hook(_register_configs, "open_clip")
