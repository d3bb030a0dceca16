"""A binding test in the demo world: two objects per image, captions that bind or mis-bind them.

SugarCrepe (Hsieh et al., NeurIPS 2023) asks a CLIP model to prefer an image's caption over a
"hard negative" that changes one thing in it. Here the images are the demo world's shapes and
colours, two objects per image, and the negatives come in SugarCrepe's categories:

* ``swap_att``: the two objects' colours swapped ("a red circle and a blue square" against "a blue
  circle and a red square"): the same words, bound the other way;
* ``swap_obj``: the two objects' shapes swapped, the colours kept in place ("a red square and a
  blue circle"): again the same words; its meaning equals ``swap_att``'s negative, only the order
  of mention differs;
* ``replace_att``: one object's colour replaced by a colour absent from the image;
* ``replace_obj``: one object's shape replaced by a shape absent from the image.

The two swaps need binding (which colour goes with which shape): a model that sees the image as a
bag of colours and shapes cannot tell the captions apart. The two replacements do not: an absent
colour or shape gives the negative away, so they are the control that says the model reads two
objects at all. Chance is 0.5 in every category.

How an image is made, so that each object's mask is exact: the image is split into a left and a
right half; each object is the world's upright polygon filled without anti-aliasing
(:func:`unirepclip.data.navon.fill_polygon`) at ``object_scale`` of the side, centred in its
half with a small vertical offset, in the colour's exact RGB (no jitter) on a plain grey chosen
away from both colours' brightness. The objects never overlap, so ``masks[i, k]`` are exactly the
pixels painted in object k's colour. Which object a caption names first is drawn per item, so
neither the left-right order nor the order of mention gives the answer. Every item is a pure
function of ``(seed, index)``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .navon import fill_polygon
from .synthetic import COLOUR_RGB, COLOURS, SHAPES

__all__ = ["CATEGORIES", "BINDING_CATEGORIES", "CHANCE", "BindingSet", "object_phrase",
           "pair_caption", "negative_caption", "render_pair", "binding_set"]

#: The SugarCrepe-style categories of negatives, in the order figures show them.
CATEGORIES: Tuple[str, ...] = ("swap_att", "swap_obj", "replace_att", "replace_obj")
#: The categories that need binding (the same words in both captions).
BINDING_CATEGORIES: Tuple[str, ...] = ("swap_att", "swap_obj")
#: Two captions per item: chance is one half.
CHANCE = 0.5
_GREY_RANGE = (40.0, 215.0)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def object_phrase(colour: str, shape: str) -> str:
    """``"a red circle"``, ``"an orange star"``."""
    return f"{_article(colour)} {colour} {shape}"


def pair_caption(objects: Sequence[Tuple[str, str]]) -> str:
    """The caption of (colour, shape) objects in order of mention: ``"a red circle and a blue
    square"``."""
    return " and ".join(object_phrase(c, s) for c, s in objects)


def negative_caption(category: str, objects: Sequence[Tuple[str, str]], target: int,
                     replacement: str) -> str:
    """The negative of ``category`` for the caption of ``objects`` (order of mention): the swaps
    exchange the colours (``swap_att``) or shapes (``swap_obj``) of the two objects; the
    replacements change object ``target``'s colour or shape to ``replacement``."""
    (c0, s0), (c1, s1) = objects
    if category == "swap_att":
        return pair_caption([(c1, s0), (c0, s1)])
    if category == "swap_obj":
        return pair_caption([(c0, s1), (c1, s0)])
    if category not in CATEGORIES:
        raise ValueError(f"category={category!r} is not one of {CATEGORIES}")
    out = [list(o) for o in objects]
    out[target][0 if category == "replace_att" else 1] = replacement
    return pair_caption([tuple(o) for o in out])


def _luma(rgb: Sequence[float]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _background_grey(colours: Sequence[str]) -> float:
    """The grey level in ``_GREY_RANGE`` farthest from every object colour's brightness."""
    lumas = [_luma(COLOUR_RGB[c]) for c in colours]
    grid = np.linspace(*_GREY_RANGE, 176)
    return float(grid[np.argmax([min(abs(g - v) for v in lumas) for g in grid])])


def render_pair(shapes: Sequence[str], colours: Sequence[str], *, image_size: int = 64,
                object_scale: float = 0.42, offsets: Sequence[float] = (0.0, 0.0)
                ) -> Tuple[np.ndarray, np.ndarray]:
    """``(image (S, S, 3) uint8, masks (2, S, S) bool)``: object 0 in the left half, object 1 in
    the right, each of diameter ``object_scale * S`` centred in its half and moved down by
    ``offsets[k] * S`` (see the module doc)."""
    s = int(image_size)
    if s != image_size or s < 16:
        raise ValueError(f"image_size={image_size!r}: expected an integer >= 16")
    diameter = float(object_scale) * (s - 1)
    if not 0 < diameter <= s / 2 - 2:
        raise ValueError(f"object_scale={object_scale!r}: two objects must fit side by side "
                         f"(0 < object_scale < {(s / 2 - 2) / (s - 1):.3f})")
    for name, value, vocab in (("shape", shapes, SHAPES), ("colour", colours, COLOURS)):
        bad = [v for v in value if v not in vocab]
        if len(value) != 2 or bad:
            raise ValueError(f"{name}s={list(value)!r}: expected two of the demo world's {vocab}")
    grey = _background_grey(colours)
    image = np.full((s, s, 3), round(grey), np.uint8)
    masks = np.zeros((2, s, s), bool)
    for k in range(2):
        cx = (s / 2) * k + (s / 2 - 1) / 2
        cy = (s - 1) / 2 + float(offsets[k]) * s
        masks[k] = fill_polygon(shapes[k], diameter, s, (cx, cy))
        if masks[k, :, s // 2:].any() if k == 0 else masks[k, :, :s // 2].any():
            raise ValueError(f"object {k} crosses the middle at image_size={s}, "
                             f"object_scale={object_scale}: lower object_scale")
        image[masks[k]] = COLOUR_RGB[colours[k]]
    return image, masks


@dataclasses.dataclass
class BindingSet:
    """Aligned arrays of a binding test: ``images`` (N, S, S, 3) uint8, ``masks`` (N, 2, S, S)
    (object 0 left, object 1 right), ``shapes`` and ``colours`` (N, 2) names, ``order`` (N, 2):
    which object the captions name first; ``captions[category]`` the (N, 2) pairs (positive,
    negative) of each category."""

    images: np.ndarray
    masks: np.ndarray
    shapes: np.ndarray
    colours: np.ndarray
    order: np.ndarray
    captions: Dict[str, List[Tuple[str, str]]]
    settings: Dict[str, float]

    def __len__(self) -> int:
        return len(self.images)

    def texts(self) -> List[str]:
        """Every distinct caption, in first-seen order."""
        return list(dict.fromkeys(t for pairs in self.captions.values() for pair in pairs
                                  for t in pair))


def _item(seed: int, index: int, categories: Sequence[str]) -> Dict[str, object]:
    rng = np.random.default_rng([int(seed), int(index)])
    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), 2, replace=False)]
    colours = [COLOURS[i] for i in rng.choice(len(COLOURS), 2, replace=False)]
    offsets = rng.uniform(-0.12, 0.12, 2)
    order = rng.permutation(2)
    target = int(rng.integers(2))
    other_colours = [c for c in COLOURS if c not in colours]
    other_shapes = [s for s in SHAPES if s not in shapes]
    replace = {"replace_att": other_colours[int(rng.integers(len(other_colours)))],
               "replace_obj": other_shapes[int(rng.integers(len(other_shapes)))]}
    mentioned = [(colours[k], shapes[k]) for k in order]
    positive = pair_caption(mentioned)
    captions = {c: (positive, negative_caption(c, mentioned, target, replace.get(c, "")))
                for c in categories}
    return dict(shapes=shapes, colours=colours, offsets=offsets, order=order, captions=captions)


def binding_set(n_images: int, *, seed: int = 0, image_size: int = 64,
                object_scale: float = 0.42, categories: Sequence[str] = CATEGORIES
                ) -> BindingSet:
    """``n_images`` two-object images, each with one (positive, negative) caption pair per
    category; item i depends on ``(seed, i)`` only."""
    if int(n_images) != n_images or n_images < 1:
        raise ValueError(f"n_images={n_images!r}: expected a positive integer")
    bad = [c for c in categories if c not in CATEGORIES]
    if bad or not categories:
        raise ValueError(f"categories={list(categories)!r}: expected some of {CATEGORIES}")
    items = [_item(seed, i, categories) for i in range(int(n_images))]
    rendered = [render_pair(it["shapes"], it["colours"], image_size=image_size,
                            object_scale=object_scale, offsets=it["offsets"]) for it in items]
    return BindingSet(
        images=np.stack([r[0] for r in rendered]), masks=np.stack([r[1] for r in rendered]),
        shapes=np.array([it["shapes"] for it in items]),
        colours=np.array([it["colours"] for it in items]),
        order=np.array([it["order"] for it in items]),
        captions={c: [it["captions"][c] for it in items] for c in categories},
        settings={"image_size": float(image_size), "object_scale": float(object_scale),
                  "seed": float(seed)})
