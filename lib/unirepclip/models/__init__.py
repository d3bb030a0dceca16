"""The model layer: the UniRepLKNet tower (registered in timm), configs and the factory, checkpoint
loading (state dict in, state dict out), inspection, and the weights shipped with the package."""
from unirepclip.models import unireplknet  # noqa: F401  (registers unireplknet_* with timm)
from unirepclip.models.factory import (  # noqa: F401
    build_model,
    create_model,
    create_model_and_transforms,
    get_model_config,
    get_tokenizer,
    list_models,
    register_model_configs,
)
from unirepclip.models.inspection import CheckpointReport, inspect_checkpoint, is_inference_form  # noqa: F401
from unirepclip.models.loading import CheckpointError, CheckpointMismatchError  # noqa: F401
