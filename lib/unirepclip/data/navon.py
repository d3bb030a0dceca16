"""Navon figures from the demo world's shapes: a synthetic cue conflict with exact masks.

A Navon figure (Navon, 1977) is a large *global* shape made of small copies of a *local* shape (a
star made of small circles). With different shapes at the two levels it is a cue conflict for the
demo, which has never seen ImageNet's classes: a model that names the global shape answers by the
configuration, one that names the local shape by the small elements (the demo's stand-in for
texture). The metric is :func:`unirepclip.eval.shape_bias.shape_bias` with the global shape as
"shape" and the local shape as "texture".

How a figure is made, so that both masks are exact:

* the global mask is the global shape's polygon filled at ``global_scale`` of the side (the demo
  world's own outlines, :mod:`unirepclip.data.synthetic`, upright), centred;
* one element is the local shape filled on a small canvas at ``element_scale`` of the side; the
  elements are that stamp copied at integer offsets on a square grid (pitch: the element's width
  plus a gap), kept only where the stamp lies wholly inside the global mask and touches no kept
  element; the grid's phase is the one that keeps the most elements;
* the image is the background with exactly the elements' pixels painted: the local mask is the
  union of the element masks, and every element lies within the global mask.

Two controls: the *plain* figure (the global shape made of its own copies, no conflict) and the
*elements alone* (one element, the same stamp at the same size, centred on a blank background):
a low rate of local answers means little when the elements alone are not recognized at that size.
Everything renders at any image size; a figure is a pure function of its arguments.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .synthetic import _SHAPE_POLYGONS, COLOUR_RGB, COLOURS, SHAPES  # the world's own outlines

__all__ = ["KINDS", "NavonFigure", "NavonSet", "fill_polygon", "element_stamp", "render_navon",
           "render_elements_alone", "navon_set"]

#: The stimulus kinds of a set: the conflict, the plain control, the elements-alone control.
KINDS: Tuple[str, ...] = ("conflict", "plain", "elements_alone")
_BACKGROUND_LUMA = (200.0, 60.0)  # light grey, or dark grey for colours too light to stand out
_MIN_ELEMENT_PX = 3


@dataclasses.dataclass
class NavonFigure:
    """One rendered figure. ``element_masks`` (K, S, S) are the elements' pixels, disjoint;
    ``local_mask`` is their union (the painted pixels), ``global_mask`` the global shape's
    silhouette (for the elements-alone control, the element's own mask)."""

    image: np.ndarray
    global_mask: np.ndarray
    local_mask: np.ndarray
    element_masks: np.ndarray
    global_shape: str
    local_shape: str
    element_px: int
    colour: str

    @property
    def n_elements(self) -> int:
        return len(self.element_masks)


def _check_shape(name: str, value: str) -> None:
    if value not in SHAPES:
        raise ValueError(f"{name}={value!r} is not one of the demo world's shapes {SHAPES}")


def fill_polygon(shape: str, diameter: float, canvas: int, center: Tuple[float, float]
                 ) -> np.ndarray:
    """The (canvas, canvas) bool mask of ``shape`` (upright) of circumscribed ``diameter`` px
    centred at ``center`` (x, y), filled without anti-aliasing as the demo world draws it."""
    _check_shape("shape", shape)
    image = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(image)
    for fill, poly in _SHAPE_POLYGONS[shape]:
        pts = poly * (diameter / 2) + np.asarray(center, float)
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255 * fill)
    return np.asarray(image) > 0


def element_stamp(shape: str, element_px: int) -> np.ndarray:
    """One local element: ``shape`` filled in an (element_px, element_px) box, cropped to it."""
    if int(element_px) != element_px or element_px < _MIN_ELEMENT_PX:
        raise ValueError(f"element size {element_px!r} px: expected an integer >= "
                         f"{_MIN_ELEMENT_PX} (raise element_scale or the image size)")
    n = int(element_px)
    mask = fill_polygon(shape, n - 1, n, ((n - 1) / 2, (n - 1) / 2))
    if not mask.any():
        raise ValueError(f"element size {n} px: the {shape} has no pixels")
    return mask


def _place(global_mask: np.ndarray, stamp: np.ndarray, pitch: int, phase: Tuple[int, int]
           ) -> List[Tuple[int, int]]:
    """Top-left corners of the stamps on the grid of ``phase`` that lie inside ``global_mask``."""
    s, (h, w) = global_mask.shape[0], stamp.shape
    corners, taken = [], np.zeros_like(global_mask)
    for y in range(phase[1], s - h + 1, pitch):
        for x in range(phase[0], s - w + 1, pitch):
            window = global_mask[y:y + h, x:x + w]
            if np.all(window[stamp]) and not np.any(taken[y:y + h, x:x + w][stamp]):
                taken[y:y + h, x:x + w] |= stamp
                corners.append((x, y))
    return corners


def _colours(colour: str) -> Tuple[np.ndarray, np.ndarray]:
    if colour not in COLOUR_RGB:
        raise ValueError(f"colour={colour!r} is not one of the demo world's colours {COLOURS}")
    rgb = np.array(COLOUR_RGB[colour], np.uint8)
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    grey = _BACKGROUND_LUMA[0] if luma < 150 else _BACKGROUND_LUMA[1]
    return rgb, np.full(3, grey, np.uint8)


def _sizes(image_size: int, global_scale: float, element_scale: float) -> Tuple[float, int]:
    if int(image_size) != image_size or image_size < 16:
        raise ValueError(f"image_size={image_size!r}: expected an integer >= 16")
    if not 0 < element_scale < global_scale <= 1:
        raise ValueError(f"element_scale={element_scale!r}, global_scale={global_scale!r}: expected "
                         f"0 < element_scale < global_scale <= 1 (fractions of the side)")
    return global_scale * (image_size - 1), int(round(element_scale * image_size))


def render_navon(global_shape: str, local_shape: str, *, image_size: int = 64,
                 global_scale: float = 0.95, element_scale: float = 0.15, gap: int = 1,
                 colour: str = "blue") -> NavonFigure:
    """A ``global_shape`` made of small ``local_shape`` elements (see the module doc). Raises
    ``ValueError`` when no element fits inside the global shape at these sizes."""
    _check_shape("global_shape", global_shape)
    diameter, element_px = _sizes(image_size, global_scale, element_scale)
    s = int(image_size)
    global_mask = fill_polygon(global_shape, diameter, s, ((s - 1) / 2, (s - 1) / 2))
    stamp = element_stamp(local_shape, element_px)
    pitch = element_px + int(gap)
    best: List[Tuple[int, int]] = []
    step = max(1, pitch // 6)  # a few phases suffice; every one keeps the masks exact
    for py in range(0, pitch, step):
        for px in range(0, pitch, step):
            corners = _place(global_mask, stamp, pitch, (px, py))
            if len(corners) > len(best):
                best = corners
    if not best:
        raise ValueError(f"no {element_px} px {local_shape} fits inside the {global_shape} at "
                         f"image_size={s}, global_scale={global_scale}: lower element_scale")
    return _paint(global_mask, stamp, best, global_shape, local_shape, colour)


def _paint(global_mask: np.ndarray, stamp: np.ndarray, corners: Sequence[Tuple[int, int]],
           global_shape: str, local_shape: str, colour: str) -> NavonFigure:
    s, (h, w) = global_mask.shape[0], stamp.shape
    elements = np.zeros((len(corners), s, s), bool)
    for k, (x, y) in enumerate(corners):
        elements[k, y:y + h, x:x + w] = stamp
    local_mask = elements.any(axis=0)
    rgb, grey = _colours(colour)
    image = np.broadcast_to(grey, (s, s, 3)).copy()
    image[local_mask] = rgb
    return NavonFigure(image, global_mask, local_mask, elements, global_shape, local_shape,
                       int(h), colour)


def render_elements_alone(local_shape: str, *, image_size: int = 64, global_scale: float = 0.95,
                          element_scale: float = 0.15, colour: str = "blue") -> NavonFigure:
    """The elements-alone control: one ``local_shape`` element at its size in the figure,
    centred; both masks are the element's own (it is its own "global" shape)."""
    _, element_px = _sizes(image_size, global_scale, element_scale)
    stamp = element_stamp(local_shape, element_px)
    s = int(image_size)
    corner = ((s - stamp.shape[1]) // 2, (s - stamp.shape[0]) // 2)
    elements = np.zeros((1, s, s), bool)
    elements[0, corner[1]:corner[1] + stamp.shape[0], corner[0]:corner[0] + stamp.shape[1]] = stamp
    return _paint(elements[0], stamp, [corner], local_shape, local_shape, colour)


@dataclasses.dataclass
class NavonSet:
    """Aligned arrays of a stimulus set: ``images`` (N, S, S, 3) uint8, ``global_masks`` and
    ``local_masks`` (N, S, S), the shapes' names, ``kind`` (one of :data:`KINDS`) and the
    element size and count of each item."""

    images: np.ndarray
    global_masks: np.ndarray
    local_masks: np.ndarray
    global_shape: List[str]
    local_shape: List[str]
    kind: List[str]
    colour: List[str]
    n_elements: np.ndarray
    element_px: int
    settings: Dict[str, float]

    def __len__(self) -> int:
        return len(self.kind)

    def select(self, kind: str) -> np.ndarray:
        """Indices of the items of one kind."""
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not one of {KINDS}")
        return np.flatnonzero(np.asarray(self.kind) == kind)


def navon_set(*, image_size: int = 64, global_scale: float = 0.95, element_scale: float = 0.15,
              shapes: Optional[Sequence[str]] = None, colours: Sequence[str] = ("blue", "red"),
              kinds: Sequence[str] = KINDS) -> NavonSet:
    """Every ordered pair of different ``shapes`` (conflict), each shape made of itself (plain)
    and each shape's element alone, once per colour in ``colours``. Shapes default to every
    demo shape whose figures fit (:data:`~unirepclip.data.synthetic.SHAPES`)."""
    shapes = list(SHAPES if shapes is None else shapes)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not shapes or not colours:
        raise ValueError(f"navon_set: kinds {bad} not in {KINDS}" if bad else
                         "navon_set: give at least one shape and one colour")
    size = dict(image_size=image_size, global_scale=global_scale, element_scale=element_scale)
    figures: List[Tuple[str, NavonFigure]] = []
    for colour in colours:
        for g in shapes:
            for loc in shapes:
                kind = "plain" if g == loc else "conflict"
                if kind in kinds:
                    figures.append((kind, render_navon(g, loc, colour=colour, **size)))
            if "elements_alone" in kinds:
                figures.append(("elements_alone", render_elements_alone(g, colour=colour, **size)))
    return NavonSet(
        images=np.stack([f.image for _, f in figures]),
        global_masks=np.stack([f.global_mask for _, f in figures]),
        local_masks=np.stack([f.local_mask for _, f in figures]),
        global_shape=[f.global_shape for _, f in figures],
        local_shape=[f.local_shape for _, f in figures], kind=[k for k, _ in figures],
        colour=[f.colour for _, f in figures],
        n_elements=np.array([f.n_elements for _, f in figures]),
        element_px=figures[0][1].element_px, settings={k: float(v) for k, v in size.items()})
