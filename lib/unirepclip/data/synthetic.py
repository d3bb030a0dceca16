"""A captioned synthetic world: coloured shapes on varied backgrounds, with exact pixel masks.

Why it exists: the real checkpoint and ImageNet are out of reach on a machine without network, so the
workbook makes its own labelled, captioned images. Everything is a pure function of
``(seed, split, index)``: each image draws from its own ``numpy.random.Generator`` seeded with that
triple, so an item's pixels do not depend on how many items are rendered or in which order.

Design choices worth knowing when reading results:

* an object's *size* is its diameter as a fraction of the image side (the default
  ``object_scale=(0.3, 0.55)``, the demo model's world: the shape fits in a circle whose diameter
  is 30-55% of the side), so the same world can be rendered at
  any image size and a "small object in a small image" is easy to ask for;
* objects are drawn without anti-aliasing from the very polygon that makes the mask, so the mask is
  exactly the object's pixels; the object colour is a saturated hue (channel spread >= 100 after
  jitter) while every background is a low-saturation grey (spread <= 30) whose brightness stays away
  from the object's, so the colour stays nameable on every background;
* backgrounds are plain, gradient, noise or texture (stripes / checks), chosen per image, so that
  no single pixel gives the answer away;
* captions come from two disjoint families of phrasings: ``"train"`` (used for the train and val
  splits) and ``"heldout"`` (used for the test split and for the zero-shot prompts), so a test caption
  or prompt is never a sentence seen in training.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SHAPES", "COLOURS", "COLOUR_RGB", "SIZE_WORDS", "POSITION_WORDS", "BACKGROUNDS", "SPLITS",
    "PHRASINGS", "PromptTemplate", "SyntheticSamples", "SyntheticWorld", "SyntheticShapes",
    "zeroshot_task", "caption_templates", "all_captions",
]

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "heart", "crescent")
COLOURS: Tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
# Fixed, clearly distinct hues; each has a channel spread well above any background's.
COLOUR_RGB: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 160, 50),
    "blue": (40, 80, 215),
    "yellow": (235, 210, 40),
    "purple": (135, 50, 185),
    "orange": (240, 130, 25),
}
SIZE_WORDS: Tuple[str, ...] = ("small", "medium", "large")
# 3 x 3 grid of the object's centre, row-major from the top left.
POSITION_WORDS: Tuple[str, ...] = ("top left", "top", "top right", "left", "center", "right",
                                   "bottom left", "bottom", "bottom right")
BACKGROUNDS: Tuple[str, ...] = ("plain", "gradient", "noise", "texture")
SPLITS: Tuple[str, ...] = ("train", "val", "test")
PHRASINGS: Tuple[str, ...] = ("train", "heldout")
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_DEFAULT_PHRASING = {"train": "train", "val": "train", "test": "heldout"}

_COLOUR_JITTER = 10          # per-channel, per-image jitter of the object colour
_BG_TINT = 12                # per-channel tint of the background grey (keeps spread <= 24)
_MIN_LUMA_GAP = 45           # background brightness kept this far from the object's

# ---------------------------------------------------------------------------------------------
# Phrasings. Fields: {obj} "a red star" / "an orange star"; {obj_s} with the size word;
# {pos} a position phrase; {bg} a background phrase. The two families share no frame and no
# position / background wording.
# ---------------------------------------------------------------------------------------------
_TEMPLATES: Dict[str, Tuple[str, ...]] = {
    "train": (
        "a photo of {obj_s} {pos}",
        "a photo of {obj}",
        "{obj} on {bg}",
        "there is {obj} on {bg}",
        "{obj_s} {pos}",
        "an image of {obj_s} on {bg}",
        "a drawing of {obj} {pos}",
        "{obj_s} {pos} on {bg}",
        "a photo of {obj_s} on {bg}",
        "a drawing of {obj_s}",
    ),
    "heldout": (
        "a picture of {obj}",
        "an illustration of {obj}",
        "this image contains {obj}",
        "a rendering of {obj}",
        "a picture of {obj_s} {pos}",
        "a rendering of {obj_s} set against {bg}",
        "this image contains {obj_s} {pos}",
        "an illustration of {obj} {pos}, set against {bg}",
    ),
}
_POSITION_PHRASES: Dict[str, Tuple[str, ...]] = {
    "train": ("in the top left corner", "at the top", "in the top right corner", "on the left",
              "in the center", "on the right", "in the bottom left corner", "at the bottom",
              "in the bottom right corner"),
    "heldout": ("toward the upper left", "toward the top edge", "toward the upper right",
                "toward the left side", "in the middle", "toward the right side",
                "toward the lower left", "toward the bottom edge", "toward the lower right"),
}
_BACKGROUND_PHRASES: Dict[str, Tuple[str, ...]] = {
    "train": ("a plain background", "a gradient background", "a noisy background",
              "a textured background"),
    "heldout": ("a flat backdrop", "a shaded backdrop", "a grainy backdrop", "a patterned backdrop"),
}
# How the second object (two_objects=True) is mentioned.
_SECOND_OBJECT: Dict[str, Tuple[str, ...]] = {
    "train": ("{caption}, next to {obj2}", "{caption} and {obj2}"),
    "heldout": ("{caption}, beside {obj2}", "{caption}; {obj2} is also visible"),
}
# Zero-shot prompt frames: the held-out frames that need only the object.
_PROMPT_FRAMES: Tuple[str, ...] = ("a picture of {obj}", "an illustration of {obj}",
                                   "this image contains {obj}", "a rendering of {obj}")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _noun_phrase(colour: str, shape: str, size: Optional[str] = None) -> str:
    words = ([size] if size else []) + [colour, shape]
    return f"{_article(words[0])} {' '.join(words)}"


def caption_templates(phrasing: str) -> Tuple[str, ...]:
    """The caption frames of one phrasing family (``"train"`` or ``"heldout"``)."""
    _check_choice("phrasing", phrasing, PHRASINGS)
    return _TEMPLATES[phrasing]


def _fill(template: str, phrasing: str, shape: str, colour: str, size: str, position: str,
          background: str) -> str:
    return template.format(
        obj=_noun_phrase(colour, shape), obj_s=_noun_phrase(colour, shape, size),
        pos=_POSITION_PHRASES[phrasing][POSITION_WORDS.index(position)],
        bg=_BACKGROUND_PHRASES[phrasing][BACKGROUNDS.index(background)])


def all_captions(phrasing: str) -> set:
    """Every single-object caption the family can produce (for checking disjointness)."""
    out = set()
    for t, s, c, z, p, b in itertools.product(caption_templates(phrasing), SHAPES, COLOURS,
                                              SIZE_WORDS, POSITION_WORDS, BACKGROUNDS):
        out.add(_fill(t, phrasing, s, c, z, p, b))
    return out


class PromptTemplate:
    """A zero-shot prompt with the class name left open: ``t("star")`` or ``t.format("star")``.

    Callable rather than a ``"{}"`` string because the article depends on the word that follows
    ("an orange star"), which a plain format string cannot know. open_clip's
    ``build_zero_shot_classifier`` accepts callables.
    """

    def __init__(self, frame: str, *, shape: Optional[str] = None, colour: Optional[str] = None):
        if (shape is None) == (colour is None):
            raise ValueError("PromptTemplate: give exactly one of shape= or colour= (the fixed word)")
        self.frame, self.shape, self.colour = frame, shape, colour

    def __call__(self, classname: str) -> str:
        if self.shape is None:
            return self.frame.format(obj=_noun_phrase(self.colour, classname))
        return self.frame.format(obj=_noun_phrase(classname, self.shape))

    def format(self, classname: str) -> str:
        return self(classname)

    def __repr__(self) -> str:
        fixed = f"shape={self.shape!r}" if self.shape else f"colour={self.colour!r}"
        return f"PromptTemplate({self.frame!r}, {fixed})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptTemplate) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def zeroshot_task(task: str) -> Tuple[List[str], List[PromptTemplate]]:
    """Class names and prompt templates for zero-shot classification of the synthetic world.

    ``task="shape"``: classes are :data:`SHAPES`; prompts ensemble over every colour
    ("a picture of a red {}", ...). ``task="colour"``: classes are :data:`COLOURS`; prompts ensemble
    over every shape. All prompts come from the held-out phrasing family, never seen in training.
    Usable directly with ``open_clip.zero_shot_classifier.build_zero_shot_classifier``.
    """
    _check_choice("task", task, ("shape", "colour"))
    if task == "shape":
        templates = [PromptTemplate(f, colour=c) for f in _PROMPT_FRAMES for c in COLOURS]
        return list(SHAPES), templates
    templates = [PromptTemplate(f, shape=s) for f in _PROMPT_FRAMES for s in SHAPES]
    return list(COLOURS), templates


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {tuple(choices)}")


# ---------------------------------------------------------------------------------------------
# Geometry: every shape as polygons inside the unit disk, (fill, points) pairs drawn in order, so
# shapes with holes (ring, crescent) cut them with a second polygon of fill 0.
# ---------------------------------------------------------------------------------------------
def _circle(n: int = 48, r: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _regular(k: int, r: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(k) * 2 * np.pi / k
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _cross(half_width: float = 0.3, arm: float = 0.95) -> np.ndarray:
    w, a = half_width, arm
    return np.array([(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a),
                     (-w, w), (-a, w), (-a, -w), (-w, -w)], dtype=float)


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], 1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.sqrt((pts ** 2).sum(1)).max()


_SHAPE_POLYGONS: Dict[str, List[Tuple[int, np.ndarray]]] = {
    "circle": [(1, _circle())],
    # Every shape fits the unit disk: the size of an object is its circumscribed diameter.
    "square": [(1, _regular(4, phase=np.pi / 4))],
    "triangle": [(1, _regular(3))],
    "star": [(1, _star())],
    "cross": [(1, _cross())],
    "ring": [(1, _circle()), (0, _circle(r=0.55))],
    "heart": [(1, _heart())],
    "crescent": [(1, _circle()), (0, _circle(r=0.8, cx=0.45, cy=-0.15))],
}

# Bump when the renderer changes pixels or captions: feature caches key on it.
WORLD_VERSION = 1


@dataclasses.dataclass
class SyntheticSamples:
    """A rendered batch of the synthetic world (arrays aligned on the first axis).

    ``masks`` are exactly the pixels of the first (named) object; with ``two_objects=True`` the
    second object's labels are in ``shape2`` / ``colour2`` and its *visible* pixels in ``masks2``
    (``None`` for one-object worlds). ``scale`` is the object's diameter over the image side,
    ``center`` its bounding-box centre in pixels (x, y), ``angle`` its rotation in radians.
    """

    split: str
    phrasing: str
    indices: np.ndarray
    images: np.ndarray
    masks: Optional[np.ndarray]
    shape: np.ndarray
    colour: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    center: np.ndarray
    size_word: List[str]
    position_word: List[str]
    background: List[str]
    captions: List[str]
    shape2: Optional[np.ndarray] = None
    colour2: Optional[np.ndarray] = None
    masks2: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.indices)


class SyntheticWorld:
    """Renders captioned images of coloured shapes; every item is a pure function of (seed, split, index).

    Args:
        image_size: side of the square images, in pixels.
        object_scale: (min, max) object diameter as a fraction of the image side, in (0, 1].
        two_objects: add a second object of a different shape and colour (kept apart when possible).
        seed: non-negative integer; worlds with different seeds share no images.
    """

    def __init__(self, image_size: int = 64, object_scale: Tuple[float, float] = (0.3, 0.55),
                 two_objects: bool = False, seed: int = 0):
        if int(image_size) != image_size or image_size < 8:
            raise ValueError(f"image_size={image_size!r}: expected an integer >= 8")
        lo, hi = (float(v) for v in object_scale)
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"object_scale={object_scale!r}: expected 0 < min <= max <= 1")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed={seed!r}: expected a non-negative integer")
        self.image_size = int(image_size)
        self.object_scale = (lo, hi)
        self.two_objects = bool(two_objects)
        self.seed = int(seed)
        s = self.image_size
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        self._xx, self._yy = xx, yy

    def __repr__(self) -> str:
        return (f"SyntheticWorld(image_size={self.image_size}, object_scale={self.object_scale}, "
                f"two_objects={self.two_objects}, seed={self.seed})")

    @property
    def identity(self) -> Dict[str, Any]:
        """Everything that determines the pixels and captions (for cache keys)."""
        return {"class": "SyntheticWorld", "version": WORLD_VERSION, "image_size": self.image_size,
                "object_scale": list(self.object_scale), "two_objects": self.two_objects,
                "seed": self.seed}

    # -- public ------------------------------------------------------------------------------
    def render(self, split: str, n: int, *, start: int = 0, phrasing: Optional[str] = None,
               with_masks: bool = True, progress: Optional[bool] = None) -> SyntheticSamples:
        """Render items ``start .. start+n-1`` of ``split`` (``"train"``, ``"val"`` or ``"test"``).

        ``phrasing`` defaults to ``"train"`` for train/val and ``"heldout"`` for test.
        ``with_masks=False`` saves memory for large training sets. ``progress`` shows a tqdm bar
        (default: only for n >= 10000).
        """
        _check_choice("split", split, SPLITS)
        phrasing = _DEFAULT_PHRASING[split] if phrasing is None else phrasing
        _check_choice("phrasing", phrasing, PHRASINGS)
        if int(n) != n or n < 0 or int(start) != start or start < 0:
            raise ValueError(f"n={n!r}, start={start!r}: expected non-negative integers")
        n, start, s = int(n), int(start), self.image_size
        images = np.empty((n, s, s, 3), np.uint8)
        masks = np.empty((n, s, s), bool) if with_masks else None
        two = self.two_objects
        masks2 = np.empty((n, s, s), bool) if (with_masks and two) else None
        ints = {k: np.empty(n, np.int64) for k in ("shape", "colour", "shape2", "colour2")}
        scale, angle, center = np.empty(n), np.empty(n), np.empty((n, 2))
        size_w, pos_w, bgs, caps = [], [], [], []
        if progress is None:
            progress = n >= 10000
        it: Iterator[int] = range(n)
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(it, desc=f"render {split}", unit="img")
        for i in it:
            item = self.render_item(split, start + i, phrasing=phrasing)
            images[i] = item["image"]
            if masks is not None:
                masks[i] = item["mask"]
            if masks2 is not None:
                masks2[i] = item["mask2"]
            for k in ints:
                ints[k][i] = item.get(k, -1)
            scale[i], angle[i], center[i] = item["scale"], item["angle"], item["center"]
            size_w.append(item["size_word"])
            pos_w.append(item["position_word"])
            bgs.append(item["background"])
            caps.append(item["caption"])
        return SyntheticSamples(
            split=split, phrasing=phrasing, indices=np.arange(start, start + n), images=images,
            masks=masks, shape=ints["shape"], colour=ints["colour"], scale=scale, angle=angle,
            center=center, size_word=size_w, position_word=pos_w, background=bgs, captions=caps,
            shape2=ints["shape2"] if two else None, colour2=ints["colour2"] if two else None,
            masks2=masks2)

    def render_item(self, split: str, index: int, *, phrasing: Optional[str] = None
                    ) -> Dict[str, Any]:
        """Render one item; returns a dict with ``image``, ``mask``, ``background_image`` (the
        background before any object was drawn), the labels and the ``caption``."""
        _check_choice("split", split, SPLITS)
        phrasing = _DEFAULT_PHRASING[split] if phrasing is None else phrasing
        rng = np.random.default_rng([self.seed, _SPLIT_ID[split], int(index)])
        s = self.image_size
        # The order of draws below is part of the data's definition: do not reorder.
        shape = int(rng.integers(len(SHAPES)))
        colour = int(rng.integers(len(COLOURS)))
        scale, angle, pts1, center = self._place(rng, shape)
        rgb = self._object_rgb(rng, colour)
        bg_kind = int(rng.integers(len(BACKGROUNDS)))
        background = self._background(rng, bg_kind, _luma(rgb))
        size_word = self._size_word(scale)
        position_word = POSITION_WORDS[3 * min(2, int(3 * center[1] / s)) + min(2, int(3 * center[0] / s))]
        templates = _TEMPLATES[phrasing]
        caption = _fill(templates[int(rng.integers(len(templates)))], phrasing, SHAPES[shape],
                        COLOURS[colour], size_word, position_word, BACKGROUNDS[bg_kind])
        mask1 = self._mask(shape, pts1, center)
        image = background.copy()
        item: Dict[str, Any] = {}
        if self.two_objects:
            shape2 = int((shape + 1 + rng.integers(len(SHAPES) - 1)) % len(SHAPES))
            colour2 = int((colour + 1 + rng.integers(len(COLOURS) - 1)) % len(COLOURS))
            rgb2 = self._object_rgb(rng, colour2)
            box1 = _bbox(pts1)
            for _ in range(20):  # keep the objects apart when there is room
                _, _, pts2, center2 = self._place(rng, shape2)
                if not _boxes_overlap(box1, _bbox(pts2)):
                    break
            mask2 = self._mask(shape2, pts2, center2)
            image[mask2] = rgb2
            connector = _SECOND_OBJECT[phrasing][int(rng.integers(len(_SECOND_OBJECT[phrasing])))]
            caption = connector.format(caption=caption, obj2=_noun_phrase(COLOURS[colour2], SHAPES[shape2]))
            item.update(shape2=shape2, colour2=colour2, mask2=mask2 & ~mask1)
        image[mask1] = rgb
        item.update(image=image, mask=mask1, background_image=background, shape=shape,
                    colour=colour, scale=scale, angle=angle, center=center, size_word=size_word,
                    position_word=position_word, background=BACKGROUNDS[bg_kind], caption=caption)
        return item

    # -- internals ---------------------------------------------------------------------------
    def _place(self, rng: np.random.Generator, shape: int):
        s = self.image_size
        scale = float(rng.uniform(*self.object_scale))
        angle = float(rng.uniform(0, 2 * np.pi))
        radius = scale * s / 2
        c, si = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -si], [si, c]])
        outer = _SHAPE_POLYGONS[SHAPES[shape]][0][1] @ rot.T * radius
        lo, hi = outer.min(0), outer.max(0)
        # Pixel coordinates run 0..s-1; the whole outline stays inside.
        cx = float(rng.uniform(-lo[0], max(-lo[0], s - 1 - hi[0])))
        cy = float(rng.uniform(-lo[1], max(-lo[1], s - 1 - hi[1])))
        offset = np.array([cx, cy])
        pts = [(fill, poly @ rot.T * radius + offset) for fill, poly in _SHAPE_POLYGONS[SHAPES[shape]]]
        box_center = offset + (lo + hi) / 2
        return scale, angle, pts, box_center

    def _mask(self, shape: int, polys, center: np.ndarray) -> np.ndarray:
        s = self.image_size
        canvas = Image.new("L", (s, s), 0)
        draw = ImageDraw.Draw(canvas)
        for fill, pts in polys:
            draw.polygon([tuple(p) for p in pts.tolist()], fill=255 * fill)
        mask = np.asarray(canvas) > 0
        if not mask.any():  # an object below a pixel still gets one, so labels stay truthful
            x, y = np.clip(np.round(center).astype(int), 0, s - 1)
            mask = mask.copy()
            mask[y, x] = True
        return mask

    @staticmethod
    def _object_rgb(rng: np.random.Generator, colour: int) -> np.ndarray:
        base = np.array(COLOUR_RGB[COLOURS[colour]], np.int64)
        return np.clip(base + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, 3), 0, 255).astype(np.uint8)

    def _size_word(self, scale: float) -> str:
        lo, hi = self.object_scale
        if hi - lo < 1e-9:
            return SIZE_WORDS[1]
        return SIZE_WORDS[min(2, int(3 * (scale - lo) / (hi - lo)))]

    def _grey(self, rng: np.random.Generator, object_luma: float) -> np.ndarray:
        """A low-saturation colour whose brightness keeps ``_MIN_LUMA_GAP`` from the object's."""
        lo, hi = 25.0, 230.0
        a = max(0.0, object_luma - _MIN_LUMA_GAP - lo)          # room below the object
        b = max(0.0, hi - (object_luma + _MIN_LUMA_GAP))        # room above it
        u = float(rng.uniform(0, a + b)) if a + b > 0 else 0.0
        g = lo + u if u < a else object_luma + _MIN_LUMA_GAP + (u - a)
        tint = rng.integers(-_BG_TINT, _BG_TINT + 1, 3)
        return np.clip(g + tint, 0, 255).astype(np.float32)

    def _background(self, rng: np.random.Generator, kind: int, object_luma: float) -> np.ndarray:
        s, xx, yy = self.image_size, self._xx, self._yy
        c1 = self._grey(rng, object_luma)
        name = BACKGROUNDS[kind]
        if name == "plain":
            bg = np.broadcast_to(c1, (s, s, 3))
        elif name == "gradient":
            c2 = self._grey(rng, object_luma)
            theta = rng.uniform(0, 2 * np.pi)
            t = (xx - s / 2) * np.cos(theta) + (yy - s / 2) * np.sin(theta)
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
            bg = c1 + t[..., None] * (c2 - c1)
        elif name == "noise":
            sigma = rng.uniform(8, 20)
            cell = int(rng.choice([1, 2, 4])) * max(1, s // 64)   # blob size follows image size
            m = -(-s // cell)
            noise = rng.normal(0, sigma, (m, m)).astype(np.float32)
            noise = np.repeat(np.repeat(noise, cell, 0), cell, 1)[:s, :s]
            bg = c1 + noise[..., None]     # the same offset on every channel keeps it grey
        else:  # texture: stripes or checks of two greys
            c2 = self._grey(rng, object_luma)
            period = rng.uniform(s / 16, s / 5) + 1.0
            theta = rng.uniform(0, np.pi)
            u = xx * np.cos(theta) + yy * np.sin(theta)
            if rng.integers(2) == 0:
                on = np.floor(u / period) % 2 == 0
            else:
                v = -xx * np.sin(theta) + yy * np.cos(theta)
                on = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
            bg = np.where(on[..., None], c1, c2)
        return np.clip(np.rint(bg), 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _bbox(polys) -> np.ndarray:
    pts = polys[0][1]
    return np.concatenate([pts.min(0), pts.max(0)])


def _boxes_overlap(a: np.ndarray, b: np.ndarray, gap: float = 1.0) -> bool:
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


class SyntheticShapes:
    """A torchvision-style dataset over one split of a :class:`SyntheticWorld`.

    ``ds[i]`` is ``(image, target)``: a PIL RGB image (or ``transform(image)``) and, by ``target``,
    the shape index, the colour index, the caption string or the item index. All items are rendered
    once at construction (20k 64-px images take a few seconds).

    Attributes: ``samples`` (the :class:`SyntheticSamples`), ``classes`` (class names for
    shape/colour targets, else ``None``), ``targets``, ``masks``, ``captions``, ``world``.
    """

    TARGETS = ("shape", "colour", "caption", "index")

    def __init__(self, split: str = "test", n: int = 500, image_size: int = 64, seed: int = 0,
                 target: str = "shape", transform: Optional[Callable] = None,
                 object_scale: Tuple[float, float] = (0.3, 0.55), two_objects: bool = False,
                 phrasing: Optional[str] = None):
        _check_choice("target", target, self.TARGETS)
        self.split, self.n, self.target, self.transform = split, int(n), target, transform
        self.world = SyntheticWorld(image_size=image_size, object_scale=object_scale,
                                    two_objects=two_objects, seed=seed)
        self.samples = self.world.render(split, n, phrasing=phrasing)
        self.classes: Optional[List[str]] = {"shape": list(SHAPES), "colour": list(COLOURS)}.get(target)

    @property
    def masks(self) -> np.ndarray:
        return self.samples.masks

    @property
    def captions(self) -> List[str]:
        return self.samples.captions

    @property
    def targets(self) -> List[Any]:
        return [self._target(i) for i in range(len(self))]

    @property
    def identity(self) -> Dict[str, Any]:
        """Dataset identity for feature caches (the transform is keyed separately)."""
        # the target is part of it: the labels are cached beside the features
        return {**self.world.identity, "class": "SyntheticShapes", "split": self.split,
                "n": self.n, "phrasing": self.samples.phrasing, "target": self.target}

    def __len__(self) -> int:
        return len(self.samples)

    def _target(self, i: int) -> Any:
        if self.target == "shape":
            return int(self.samples.shape[i])
        if self.target == "colour":
            return int(self.samples.colour[i])
        if self.target == "caption":
            return self.samples.captions[i]
        return int(i)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        img = Image.fromarray(self.samples.images[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, self._target(i)

    def __repr__(self) -> str:
        return (f"SyntheticShapes(split={self.split!r}, n={self.n}, target={self.target!r}, "
                f"world={self.world!r})")
