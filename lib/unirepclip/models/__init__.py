"""The model layer: the UniRepLKNet tower (registered in timm), configs and the factory, checkpoint
loading (state dict in, state dict out), inspection, the tower seam (``tower_of``: what the
analyses ask of any image tower), and the weights shipped with the package.

Importing this package is light; its names load their modules on first use. The towers are
registered with timm, and :data:`CONFIG_DIR`'s configs with open_clip, by the post-import hooks
that ``import unirepclip`` sets (see :mod:`unirepclip`)."""
from pathlib import Path

from unirepclip.lazy import lazy_exports

CONFIG_DIR = Path(__file__).parent / "model_configs"


def register_model_configs() -> None:
    """Register the package's model configs with open_clip (idempotent)."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)


# name -> the module of this package that defines it
_LAZY = {
    "build_model": "factory", "create_model": "factory", "create_model_and_transforms": "factory",
    "get_model_config": "factory", "get_tokenizer": "factory", "list_models": "factory",
    "CheckpointReport": "inspection", "inspect_checkpoint": "inspection",
    "is_inference_form": "inspection",
    "CheckpointError": "loading", "CheckpointMismatchError": "loading",
    "Tower": "towers", "NotApplicable": "towers", "tower_of": "towers",
}
__all__ = ["CONFIG_DIR", "register_model_configs", *_LAZY]
__getattr__, __dir__ = lazy_exports(
    __name__, {n: f"unirepclip.models.{m}" for n, m in _LAZY.items()}, globals())
