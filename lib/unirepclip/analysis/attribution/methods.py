"""The scalar forward and the five attribution methods, one spec per method (captum underneath).

:class:`SimilarityForward` turns a CLIP model and a text embedding into a scalar function of the
image (the cosine similarity), so every captum method applies unchanged. Each method is a small
frozen spec that takes only its own arguments, builds its captum object, and carries its channel
reduction; :data:`METHOD_SPECS` is the registry, :func:`method_spec` builds one by name and
:func:`attribute` runs one over a batch of images (one 2-D map per image):

============================ ========================================= ===========================
method                       its arguments                             channels reduced by
============================ ========================================= ===========================
``integrated_gradients``     ``n_steps``, ``baseline``                 ``"sum"``
``smoothgrad``               ``nt_samples``, ``stdevs``, ``base``,     ``"abs"`` over saliency,
                             ``base_args``, ``random_state``           ``"sum"`` over IG
``saliency``                 (none)                                    ``"abs"``
``gradcam``                  ``stage``                                 (one channel)
``occlusion``                ``window``, ``stride``, ``baseline``      ``"mean"``
============================ ========================================= ===========================

A call that passes an argument its method does not take raises a ``TypeError`` naming it.

Channel reductions: ``"sum"`` keeps the sign (positive = the pixel raises the similarity, which
is what IG's completeness and the mask metrics speak about); ``"abs"`` sums absolute values, the
usual reading of a plain gradient, whose sign says little on its own; ``"mean"`` suits occlusion,
whose windows span all three channels so the three values are equal. Grad-CAM is ReLU'd and
upsampled bilinearly to the input size with ``LayerAttribution.interpolate``.

Memory is bounded by ``batch_size`` (images per call into captum) and ``internal_batch_size``
(images per forward pass inside a method: IG steps, noise samples, occlusion windows); both are
arguments of :func:`attribute`, shared by every method.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from unirepclip.analysis.attribution.baselines import (BaselineLike, baseline_for_batch,
                                                        resolve_baseline)
from unirepclip.models.towers import tower_of
from unirepclip.utils import eval_mode

__all__ = [
    "SimilarityForward",
    "MethodSpec",
    "IntegratedGradientsSpec",
    "SmoothGradSpec",
    "SaliencySpec",
    "GradCamSpec",
    "OcclusionSpec",
    "METHOD_SPECS",
    "METHODS",
    "REDUCTIONS",
    "method_spec",
    "attribute",
    "attribute_all",
    "integrated_gradients_completeness",
]

ArrayLike = Union[np.ndarray, torch.Tensor]
REDUCTIONS = ("sum", "abs", "mean")


# ----------------------------------------------------------------------------------------------
# The scalar forward
# ----------------------------------------------------------------------------------------------

class SimilarityForward(nn.Module):
    """``images (N, 3, H, W) -> (N,)`` cosine similarity between image and text embeddings.

    Args:
        model: anything with ``encode_image(images, normalize=True)`` (an open_clip ``CLIP``).
        text_embedding: the default text embedding, (D,) or (1, D) for one text shared by every
            image, or (N, D) for one per image. It is L2-normalized here, so raw
            ``encode_text`` outputs are fine.

    ``forward(images, text_embeddings=None)`` takes per-call text embeddings as an optional
    second argument: pass them through captum's ``additional_forward_args`` so that captum
    expands them together with the images (IG steps, noise samples, occlusion windows) and each
    image keeps its own text.
    """

    def __init__(self, model: nn.Module, text_embedding: Optional[ArrayLike] = None):
        super().__init__()
        if not callable(getattr(model, "encode_image", None)):
            raise TypeError(f"SimilarityForward: model must have encode_image (an open_clip "
                            f"CLIP), got {type(model).__name__}")
        self.model = model
        if text_embedding is not None:
            self.register_buffer("text_embedding", as_text(text_embedding), persistent=False)
        else:
            self.text_embedding = None

    def forward(self, images: torch.Tensor,
                text_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        text = text_embeddings if text_embeddings is not None else self.text_embedding
        if text is None:
            raise ValueError("SimilarityForward: no text embedding given (neither at "
                             "construction nor in the call)")
        image = self.model.encode_image(images, normalize=True)
        text = F.normalize(as_text(text).to(image.device, image.dtype), dim=-1)
        if text.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"SimilarityForward: text_embeddings has {text.shape[0]} rows for "
                             f"{image.shape[0]} images; give 1 or one per image")
        if text.shape[-1] != image.shape[-1]:
            raise ValueError(f"SimilarityForward: text embedding dim {text.shape[-1]} does not "
                             f"match the image embedding dim {image.shape[-1]}")
        return (image * text).sum(dim=-1)


def as_text(t: ArrayLike) -> torch.Tensor:
    """Text embeddings as a 2-D tensor (a single (D,) embedding becomes (1, D))."""
    t = torch.as_tensor(t)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"text_embeddings must have shape (D,), (1, D) or (N, D), got "
                         f"{tuple(t.shape)}")
    return t


def _at_least_one(method: str, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or int(value) < 1:
            raise ValueError(f"{method}: {name} must be an int >= 1, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Method specs
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class MethodSpec:
    """One attribution method with its own arguments.

    Subclasses set ``name`` and ``reduce`` (the default channel reduction), validate their
    arguments in ``__post_init__``, and implement :meth:`build` (the captum object for a forward)
    and :meth:`run` (one batch). :meth:`prepare` resolves what depends on the whole image set
    (a baseline named by kind, SmoothGrad's noise level) or on the model (Grad-CAM's stage), once
    per :func:`attribute` call, so that the result does not depend on the batching.
    """

    name: ClassVar[str] = ""
    reduce: ClassVar[str] = "sum"
    needs_grad: ClassVar[bool] = True   # False: forward passes only (occlusion)

    @classmethod
    def arguments(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @property
    def random_state(self) -> Optional[int]:
        """The seed of the method's noise; None for a deterministic method."""
        return None

    def prepare(self, model: nn.Module, images: torch.Tensor) -> "MethodSpec":
        return self

    def build(self, forward: nn.Module, model: nn.Module):
        raise NotImplementedError

    @contextlib.contextmanager
    def built(self, forward: nn.Module, model: nn.Module) -> Iterator[Any]:
        """The captum object for the duration of a run (a method that hooks the model installs
        its hooks here and removes them on exit)."""
        yield self.build(forward, model)

    def run(self, algo, x: torch.Tensor, t: torch.Tensor, start: int, *,
            internal_batch_size: int, per_pass: int) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class IntegratedGradientsSpec(MethodSpec):
    """``IntegratedGradients`` (Gauss-Legendre, ``n_steps``) from ``baseline``: a kind
    (``"zero"``, ``"grey"``, ``"blur"``: :func:`make_baseline` for the images attributed), a
    number or a tensor broadcastable to the images. 0 in normalized input space is the dataset
    mean colour."""

    n_steps: int = 32
    baseline: BaselineLike = 0.0
    name: ClassVar[str] = "integrated_gradients"
    reduce: ClassVar[str] = "sum"

    def __post_init__(self):
        _at_least_one(self.name, n_steps=self.n_steps)

    def prepare(self, model, images):
        return dataclasses.replace(self, baseline=resolve_baseline(self.baseline, images))

    def build(self, forward, model):
        from captum.attr import IntegratedGradients
        return IntegratedGradients(forward)

    def run(self, algo, x, t, start, *, internal_batch_size, per_pass,
            return_convergence_delta: bool = False):
        return algo.attribute(x, baselines=baseline_for_batch(self.baseline, x, start),
                              additional_forward_args=(t,), n_steps=int(self.n_steps),
                              internal_batch_size=int(internal_batch_size),
                              return_convergence_delta=return_convergence_delta)


@dataclass(frozen=True, eq=False)
class SaliencySpec(MethodSpec):
    """``Saliency``: the raw input gradient, read by its absolute value."""

    name: ClassVar[str] = "saliency"
    reduce: ClassVar[str] = "abs"

    def build(self, forward, model):
        from captum.attr import Saliency
        return Saliency(forward)

    def run(self, algo, x, t, start, *, internal_batch_size, per_pass):
        return algo.attribute(x, abs=False, additional_forward_args=(t,))


@dataclass(frozen=True, eq=False)
class SmoothGradSpec(MethodSpec):
    """``NoiseTunnel`` (smoothgrad) over ``base``: ``"saliency"`` (raw gradients averaged over
    noise: the original SmoothGrad) or ``"integrated_gradients"`` with ``base_args`` (its own
    arguments, e.g. ``{"n_steps": 16, "baseline": "grey"}``).

    ``nt_samples`` noisy copies per image with noise std ``stdevs`` in input units; by default
    15 % of the value range of all images attributed (Smilkov et al. recommend 10-20 %),
    computed once so that it does not depend on the batching. ``random_state`` seeds the noise
    (the caller's global RNG is left as it was).
    """

    nt_samples: int = 16
    stdevs: Optional[float] = None
    base: str = "saliency"
    base_args: Mapping[str, Any] = field(default_factory=dict)
    random_state: int = 0
    name: ClassVar[str] = "smoothgrad"
    BASES: ClassVar[Tuple[str, ...]] = ("saliency", "integrated_gradients")

    def __post_init__(self):
        _at_least_one(self.name, nt_samples=self.nt_samples)
        if self.base not in self.BASES:
            raise ValueError(f"smoothgrad: base must be one of {self.BASES}, got {self.base!r}")
        # the base spec validates its own arguments (a TypeError names one it does not take)
        object.__setattr__(self, "_base", method_spec(self.base, **dict(self.base_args)))

    @property
    def reduce(self) -> str:  # type: ignore[override]
        return self._base.reduce

    def prepare(self, model, images):
        stdevs = self.stdevs if self.stdevs is not None else \
            0.15 * float(images.max() - images.min())
        out = dataclasses.replace(self, stdevs=stdevs)
        object.__setattr__(out, "_base", self._base.prepare(model, images))
        return out

    def build(self, forward, model):
        from captum.attr import NoiseTunnel
        return NoiseTunnel(self._base.build(forward, model))

    def run(self, algo, x, t, start, *, internal_batch_size, per_pass):
        if isinstance(self._base, SaliencySpec):
            kwargs: Dict[str, Any] = dict(abs=False)
        else:
            kwargs = dict(baselines=baseline_for_batch(self._base.baseline, x, start),
                          n_steps=int(self._base.n_steps),
                          internal_batch_size=int(internal_batch_size))
        return algo.attribute(x, nt_type="smoothgrad", nt_samples=int(self.nt_samples),
                              nt_samples_batch_size=per_pass, stdevs=float(self.stdevs),
                              additional_forward_args=(t,), **kwargs)


@dataclass(frozen=True, eq=False)
class GradCamSpec(MethodSpec):
    """``LayerGradCam`` on the image tower's map at depth ``stage`` (the tower seam's
    :meth:`~unirepclip.models.towers.Tower.spatial_layer`: a UniRepLKNet / ConvNeXt / ResNet
    stage, a ViT block's patch tokens as a map), ReLU'd, upsampled bilinearly to the input size.
    The last stage is the textbook choice; at small image sizes it is tiny (2 x 2 at 64 px) and
    an earlier stage may localize better (:mod:`.stages` measures it)."""

    stage: int = 3
    name: ClassVar[str] = "gradcam"
    reduce: ClassVar[str] = "sum"   # one channel already

    def prepare(self, model, images):
        tower = tower_of(model)
        tower.check_depth(self.stage, "gradcam")
        tower.check_map_used(self.stage, "Grad-CAM")   # a map the embedding never reads
        return self

    @contextlib.contextmanager
    def built(self, forward, model):
        from captum.attr import LayerGradCam
        with tower_of(model).spatial_layer(self.stage) as layer:
            yield LayerGradCam(forward, layer)

    def run(self, algo, x, t, start, *, internal_batch_size, per_pass):
        from captum.attr import LayerAttribution
        cam = algo.attribute(x, additional_forward_args=(t,), relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")


@dataclass(frozen=True, eq=False)
class OcclusionSpec(MethodSpec):
    """``Occlusion``: the drop of the similarity when a ``window`` x ``window`` square (all three
    channels) moved by ``stride`` pixels is filled with ``baseline`` (a kind, a number or a
    tensor, as for IG). An occlusion fill only has to remove the window's content, while IG's
    baseline must also give an accurate path integral: the two are separate choices."""

    window: int = 8
    stride: int = 4
    baseline: BaselineLike = 0.0
    name: ClassVar[str] = "occlusion"
    reduce: ClassVar[str] = "mean"
    needs_grad: ClassVar[bool] = False

    def __post_init__(self):
        _at_least_one(self.name, window=self.window, stride=self.stride)

    def prepare(self, model, images):
        return dataclasses.replace(self, baseline=resolve_baseline(self.baseline, images))

    def build(self, forward, model):
        from captum.attr import Occlusion
        return Occlusion(forward)

    def run(self, algo, x, t, start, *, internal_batch_size, per_pass):
        c, w, s = x.shape[1], int(self.window), int(self.stride)
        with torch.no_grad():
            return algo.attribute(x, sliding_window_shapes=(c, w, w), strides=(c, s, s),
                                  baselines=baseline_for_batch(self.baseline, x, start),
                                  additional_forward_args=(t,), perturbations_per_eval=per_pass)


METHOD_SPECS: Dict[str, Type[MethodSpec]] = {
    cls.name: cls for cls in (IntegratedGradientsSpec, SmoothGradSpec, SaliencySpec, GradCamSpec,
                              OcclusionSpec)}
METHODS: Tuple[str, ...] = tuple(METHOD_SPECS)


def method_spec(method: str, **arguments: Any) -> MethodSpec:
    """The spec of ``method`` with its own ``arguments``; a ``TypeError`` names any argument the
    method does not take, a ``ValueError`` an unknown method."""
    if method not in METHOD_SPECS:
        raise ValueError(f"attribute: method must be one of {METHODS}, got {method!r}")
    cls = METHOD_SPECS[method]
    takes = cls.arguments()
    wrong = [k for k in arguments if k not in takes]
    if wrong:
        raise TypeError(f"{method} takes no argument{'s' if len(wrong) > 1 else ''} "
                        f"{', '.join(map(repr, wrong))}; its arguments: "
                        f"{', '.join(takes) or 'none'}")
    return cls(**arguments)


# ----------------------------------------------------------------------------------------------
# Running a method
# ----------------------------------------------------------------------------------------------

def _reduce(attr: torch.Tensor, how: str) -> torch.Tensor:
    if how == "sum":
        return attr.sum(dim=1)
    if how == "abs":
        return attr.abs().sum(dim=1)
    return attr.mean(dim=1)


def _run(spec: MethodSpec, model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike, *,
         batch_size: int, internal_batch_size: int, reduce: Optional[str],
         device: Union[str, torch.device, None], progress: bool, completeness: bool = False
         ) -> Tuple[np.ndarray, Optional[Dict[str, np.ndarray]]]:
    reduce = spec.reduce if reduce is None else reduce
    if reduce not in REDUCTIONS:
        raise ValueError(f"attribute: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    _at_least_one("attribute", batch_size=batch_size, internal_batch_size=internal_batch_size)
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise ValueError(f"attribute: images must have shape (N, C, H, W), got "
                         f"{tuple(images.shape)}")
    n, _, h, w = images.shape
    text = as_text(text_embeddings)
    if text.shape[0] not in (1, n):
        raise ValueError(f"attribute: text_embeddings has {text.shape[0]} rows for {n} images; "
                         f"give 1 or one per image")
    text = text.expand(n, -1)
    spec = spec.prepare(model, images)

    param = next(model.parameters())
    dev = torch.device(device) if device is not None else param.device
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    forward = SimilarityForward(model)
    out = np.empty((n, h, w), dtype=np.float32)
    delta = np.empty(n, dtype=np.float64) if completeness else None
    gap = np.empty(n, dtype=np.float64) if completeness else None
    # SmoothGrad draws from the global RNG: fork it so the caller's stream is untouched.
    devices = [dev] if dev.type == "cuda" else []
    with eval_mode(model), spec.built(forward, model) as algo, \
            torch.random.fork_rng(devices=devices):
        if spec.random_state is not None:
            torch.manual_seed(spec.random_state)
        for start in tqdm(range(0, n, int(batch_size)), desc=f"attribution {spec.name}",
                          disable=not progress):
            # a fresh leaf: captum then needs not flip requires_grad itself (and warn about it)
            x = images[start:start + batch_size].to(dev, dtype).detach()
            x.requires_grad_(spec.needs_grad)
            t = text[start:start + batch_size].to(dev, dtype)
            per_pass = max(1, int(internal_batch_size) // x.shape[0])
            stop = start + x.shape[0]
            if completeness:
                attr, d = spec.run(algo, x, t, start, internal_batch_size=internal_batch_size,
                                   per_pass=per_pass, return_convergence_delta=True)
                with torch.no_grad():
                    base = baseline_for_batch(spec.baseline, x, start)
                    g = forward(x, t) - forward(base, t)
                delta[start:stop] = d.detach().double().cpu().numpy()
                gap[start:stop] = g.double().cpu().numpy()
            else:
                attr = spec.run(algo, x, t, start, internal_batch_size=internal_batch_size,
                                per_pass=per_pass)
            out[start:stop] = _reduce(attr.detach().float(), reduce).cpu().numpy()
    return out, ({"delta": delta, "gap": gap} if completeness else None)


def attribute(
        method: Union[str, MethodSpec],
        model: nn.Module,
        images: ArrayLike,
        text_embeddings: ArrayLike,
        *,
        batch_size: int = 8,
        internal_batch_size: int = 32,
        reduce: Optional[str] = None,
        device: Union[str, torch.device, None] = None,
        progress: bool = False,
        **arguments: Any,
) -> np.ndarray:
    """Attribution maps (N, H, W) of the image-text similarity, one per image.

    Args:
        method: a name in :data:`METHODS` (with its own ``arguments``, see the module
            docstring) or a :class:`MethodSpec` (then no ``arguments``).
        model: an open_clip ``CLIP`` (or anything with ``encode_image`` and, for Grad-CAM, an
            image tower the seam knows: :func:`unirepclip.models.towers.tower_of`). Put in eval
            mode for the call, then restored.
        images: (N, 3, H, W), preprocessed as the model expects.
        text_embeddings: (D,) / (1, D) for one caption for all images, or (N, D) one per image.
        batch_size: images per call into captum.
        internal_batch_size: at most about this many images per forward pass inside a method
            (IG's ``internal_batch_size``; noise samples and occlusion windows per pass are
            ``internal_batch_size // batch``, at least 1).
        reduce: ``"sum"``, ``"abs"`` or ``"mean"`` over colour channels; default the method's.
        device: where to compute; default the model's device (the model is not moved).
        progress: a tqdm bar over batches.
        **arguments: the method's own arguments; one it does not take is a ``TypeError``.

    Returns:
        float32 array (N, H, W).
    """
    if isinstance(method, MethodSpec):
        if arguments:
            raise TypeError(f"attribute: a {method.name} spec is given whole; got also "
                            f"{', '.join(map(repr, arguments))}")
        spec = method
    else:
        spec = method_spec(method, **arguments)
    maps, _ = _run(spec, model, images, text_embeddings, batch_size=batch_size,
                   internal_batch_size=internal_batch_size, reduce=reduce, device=device,
                   progress=progress)
    return maps


def integrated_gradients_completeness(
        model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike, *,
        n_steps: int = 32, baseline: BaselineLike = 0.0, batch_size: int = 8,
        internal_batch_size: int = 32, device: Union[str, torch.device, None] = None,
        progress: bool = False) -> Dict[str, np.ndarray]:
    """IG maps with their completeness check, per image.

    Integrated Gradients is *complete* (Sundararajan et al. 2017): its attributions sum to
    ``f(x) - f(baseline)``. The ``delta`` is captum's convergence delta
    (``return_convergence_delta=True``: sum of attributions minus that gap), the ``gap``
    ``f(x) - f(baseline)`` is evaluated on the same batch, and ``error`` is the relative figure
    ``|delta| / |gap|`` (NaN or inf where the gap is 0).

    Returns ``{"maps": (N, H, W), "delta": (N,), "gap": (N,), "error": (N,)}``.
    """
    spec = IntegratedGradientsSpec(n_steps=n_steps, baseline=baseline)
    maps, extra = _run(spec, model, images, text_embeddings, batch_size=batch_size,
                       internal_batch_size=internal_batch_size, reduce=None, device=device,
                       progress=progress, completeness=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(extra["delta"]) / np.abs(extra["gap"])
    return {"maps": maps, "delta": extra["delta"], "gap": extra["gap"], "error": error}


def attribute_all(model: nn.Module, images: ArrayLike, text_embeddings: ArrayLike,
                  methods: Union[Sequence[str], Mapping[str, Mapping[str, Any]]] = METHODS,
                  **common: Any) -> Dict[str, np.ndarray]:
    """``{method: (N, H, W) maps}`` for several methods on the same images and texts.

    ``methods`` is a sequence of names (each with its default arguments) or
    ``{name: {its own arguments}}``; ``common`` are :func:`attribute`'s shared arguments
    (``batch_size``, ``internal_batch_size``, ``device`` ...). A baseline given by kind
    (``"blur"``) is made for these very images.
    """
    settings = methods if isinstance(methods, Mapping) else {m: {} for m in methods}
    return {m: attribute(m, model, images, text_embeddings, **common, **dict(args))
            for m, args in settings.items()}
