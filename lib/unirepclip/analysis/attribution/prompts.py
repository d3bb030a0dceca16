"""The texts attributed: caption embeddings and contrastive captions for one image."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn

from unirepclip.utils import eval_mode

__all__ = ["encode_texts", "contrastive_prompts"]


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: Sequence[str], *,
                 device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """L2-normalized text embeddings (N, D) of ``texts`` (the model is put in eval mode)."""
    if isinstance(texts, str) or not len(texts):
        raise ValueError("encode_texts: texts must be a non-empty sequence of strings")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with eval_mode(model):
        return model.encode_text(tokenizer(list(texts)).to(dev), normalize=True).float()


def contrastive_prompts(shape: str, colour: str, *, other_colour: Optional[str] = None,
                        other_shape: Optional[str] = None, frame: str = "a picture of {obj}"
                        ) -> Dict[str, str]:
    """Captions for one synthetic image: the truth, the wrong colour, the wrong shape.

    ``{"true": "a picture of a red circle", "other colour": "a picture of a blue circle",
    "other shape": "a picture of a red square"}``. By default the other colour / shape is the
    next one in :data:`unirepclip.data.COLOURS` / ``SHAPES`` (cyclically). ``frame`` is a prompt
    frame with ``{obj}`` (the held-out frames of the synthetic world suit the demo model).
    """
    from unirepclip.data import COLOURS, SHAPES, PromptTemplate

    for name, value, choices in (("shape", shape, SHAPES), ("colour", colour, COLOURS),
                                 ("other_shape", other_shape or shape, SHAPES),
                                 ("other_colour", other_colour or colour, COLOURS)):
        if value not in choices:
            raise ValueError(f"contrastive_prompts: {name}={value!r} is not one of {choices}")
    other_colour = other_colour or COLOURS[(COLOURS.index(colour) + 1) % len(COLOURS)]
    other_shape = other_shape or SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]
    if other_colour == colour or other_shape == shape:
        raise ValueError("contrastive_prompts: the other colour and shape must differ from the "
                         "true ones")
    by_colour = PromptTemplate(frame, shape=shape)
    by_shape = PromptTemplate(frame, colour=colour)
    return {"true": by_colour(colour), "other colour": by_colour(other_colour),
            "other shape": by_shape(other_shape)}
