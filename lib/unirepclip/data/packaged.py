"""Real images that ship inside installed packages, so every notebook has real data offline.

* :class:`SklearnDigits`: scikit-learn's handwritten digits (1797 8x8 grey images, 10 classes),
  upscaled to RGB, with a stratified train / val / test split fixed by a seed;
* :class:`SkimagePhotos`: the sample photographs bundled with scikit-image (astronaut, coffee,
  chelsea the cat, rocket, ...), each with a short description usable as a caption or class name.

Nothing here downloads: scikit-image fetches its larger samples with ``pooch`` when it can, so
only files found inside the installed package are used, and any other is skipped with its reason.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ["DIGIT_CLASSES", "SklearnDigits", "digits_zeroshot_task", "SKIMAGE_PHOTOS",
           "SkimagePhotos"]

DIGIT_CLASSES: Tuple[str, ...] = tuple(str(d) for d in range(10))
_SPLIT_NAMES = ("train", "val", "test", "all")
_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _split_indices(labels: np.ndarray, fractions: Tuple[float, float, float], seed: int
                   ) -> Dict[str, np.ndarray]:
    """Stratified train / val / test indices (sorted), the same for the same seed."""
    from sklearn.model_selection import train_test_split

    tr, va, te = fractions
    if min(fractions) < 0 or abs(tr + va + te - 1) > 1e-9 or tr <= 0 or te <= 0:
        raise ValueError(f"fractions={fractions!r}: expected (train, val, test) >= 0 summing to 1, "
                         f"train and test > 0")
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=te, stratify=labels, random_state=seed)
    if va > 0:
        train, val = train_test_split(rest, test_size=va / (tr + va), stratify=labels[rest],
                                      random_state=seed)
    else:
        train, val = rest, idx[:0]
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test), "all": idx}


class SklearnDigits:
    """scikit-learn's handwritten digits as an image dataset: ``ds[i] -> (image, digit)``.

    The 8x8 images (ink 0..16) are scaled to 0..255 and resized to ``image_size`` with
    ``resample``; white ink on black, as stored, unless ``invert``. Attributes: ``classes``
    (``"0"``..``"9"``), ``targets``, ``indices`` (rows of ``sklearn.datasets.load_digits``),
    ``images`` (uint8, N x 8 x 8).
    """

    def __init__(self, split: str = "train", seed: int = 0, image_size: int = 64,
                 transform: Optional[Callable] = None,
                 fractions: Tuple[float, float, float] = (0.6, 0.2, 0.2),
                 resample: str = "bilinear", invert: bool = False):
        from sklearn.datasets import load_digits

        if split not in _SPLIT_NAMES:
            raise ValueError(f"split={split!r} is not one of {_SPLIT_NAMES}")
        if resample not in _RESAMPLE:
            raise ValueError(f"resample={resample!r} is not one of {tuple(_RESAMPLE)}")
        self.split, self.seed, self.image_size = split, int(seed), int(image_size)
        self.fractions, self.resample, self.invert = tuple(fractions), resample, bool(invert)
        self.transform = transform
        digits = load_digits()
        labels = digits.target.astype(np.int64)
        self.indices = _split_indices(labels, self.fractions, self.seed)[split]
        img = np.rint(digits.images[self.indices] * (255.0 / 16.0)).astype(np.uint8)
        self.images = 255 - img if self.invert else img
        self.targets: List[int] = labels[self.indices].tolist()
        self.classes: List[str] = list(DIGIT_CLASSES)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        im = Image.fromarray(self.images[i], mode="L")
        im = im.resize((self.image_size, self.image_size), _RESAMPLE[self.resample]).convert("RGB")
        if self.transform is not None:
            im = self.transform(im)
        return im, self.targets[i]

    @property
    def identity(self) -> Dict[str, Any]:
        import sklearn
        return {"class": type(self).__name__, "split": self.split, "seed": self.seed,
                "image_size": self.image_size, "fractions": list(self.fractions),
                "resample": self.resample, "invert": self.invert,
                "sklearn": sklearn.__version__}

    def __repr__(self) -> str:
        return f"SklearnDigits(split={self.split!r}, seed={self.seed}, n={len(self)})"


def digits_zeroshot_task() -> Tuple[List[str], List[str]]:
    """Class names and a few prompt templates for zero-shot digit recognition."""
    templates = ['a photo of the number: "{}".', "a handwritten digit {}.",
                 "a blurry image of the number {}.", "the number {} written in white on black."]
    return list(DIGIT_CLASSES), templates


# name in skimage.data -> a short description (also a retrieval caption)
SKIMAGE_PHOTOS: Dict[str, str] = {
    "astronaut": "a portrait of an astronaut in a space suit",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a cat",
    "rocket": "a rocket on its launch pad",
    "camera": "a man with a camera on a tripod",
    "coins": "a collection of old coins",
    "moon": "the surface of the moon",
    "hubble_deep_field": "galaxies in deep space",
    "retina": "a photograph of a human retina",
    "brick": "a brick wall",
    "grass": "a patch of grass",
    "gravel": "gravel",
    "page": "a page of printed text",
    "immunohistochemistry": "a microscope image of stained tissue",
    "horse": "the silhouette of a horse",
}


class SkimagePhotos:
    """scikit-image's bundled sample photographs: ``ds[i] -> (RGB PIL image, i)``.

    ``names`` picks a subset of :data:`SKIMAGE_PHOTOS` (default: all that load without a
    download). Attributes: ``names``, ``descriptions`` (also ``classes`` and ``captions``, one per
    image), ``skipped`` (``(name, reason)`` for those not found in the installed package).
    """

    def __init__(self, names: Optional[Sequence[str]] = None, transform: Optional[Callable] = None):
        import skimage.data

        wanted = list(SKIMAGE_PHOTOS) if names is None else list(names)
        unknown = [n for n in wanted if n not in SKIMAGE_PHOTOS]
        if unknown:
            raise ValueError(f"names: unknown sample(s) {unknown}; known: {sorted(SKIMAGE_PHOTOS)}")
        self.transform = transform
        self.names: List[str] = []
        self._arrays: List[np.ndarray] = []
        self.skipped: List[Tuple[str, str]] = []
        for name in wanted:
            try:
                arr = np.asarray(getattr(skimage.data, name)())
            except Exception as err:  # noqa: BLE001  (missing file, no pooch, no network: skip it)
                self.skipped.append((name, f"{type(err).__name__}: {err}"))
                continue
            self.names.append(name)
            self._arrays.append(_to_rgb_uint8(arr))
        if not self.names:
            raise ValueError(f"none of the scikit-image samples {wanted} could be loaded: "
                             f"{self.skipped}")
        self.descriptions: List[str] = [SKIMAGE_PHOTOS[n] for n in self.names]

    @property
    def classes(self) -> List[str]:
        return self.descriptions

    @property
    def captions(self) -> List[str]:
        return self.descriptions

    @property
    def targets(self) -> List[int]:
        return list(range(len(self)))

    def image(self, i: int) -> np.ndarray:
        """The i-th photograph as an (H, W, 3) uint8 array."""
        return self._arrays[i]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        im = Image.fromarray(self._arrays[i])
        if self.transform is not None:
            im = self.transform(im)
        return im, i

    @property
    def identity(self) -> Dict[str, Any]:
        import skimage
        return {"class": type(self).__name__, "names": self.names, "skimage": skimage.__version__}

    def __repr__(self) -> str:
        return f"SkimagePhotos({self.names})"


def _to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.rint((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)
