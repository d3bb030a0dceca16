"""Distributed image-feature extraction on PyTorch's own runtime (``torchrun``), into the cache.

Run it as ``torchrun --nproc_per_node=N -m unirepclip extract --model ... --checkpoint ...
--dataset ... --cache-dir DIR`` (or plainly with ``python -m unirepclip extract ...``: world size
1). The result is the *same* cache entry that a single process would write with
``extract_image_features(model, dataset, cache=FeatureCache(DIR))``: same key, same arrays, same
order, so a notebook finds it as a cache hit. How it gets there:

1. every rank loads the model and builds the dataset, computes the cache key, and all ranks check
   that they agree on it (a rank with other weights or other data would silently corrupt the
   result); if rank 0 finds a valid entry already, everybody stops;
2. the dataset's rows are cut into ``N`` contiguous, disjoint slices whose sizes differ by at most
   one (:func:`partition`): no padding, so no row is duplicated or dropped, unlike
   ``DistributedSampler``'s default;
3. each rank extracts its slice with :func:`~unirepclip.features.extract_image_features`
   (``indices=``: the single-process code path) and writes ``<DIR>/<key>.shards/rank{r}-of-{N}``
   (``.npz`` + ``.json``) through a :class:`~unirepclip.features.FeatureCache` rooted in the shard
   folder, i.e. atomically, the JSON last as the commit marker, with the payload's sha256, the
   key and a sha256 of the rows the rank was given;
4. barrier; rank 0 verifies every shard (sha256, key, rows, no row twice, every row either
   extracted or reported unreadable), concatenates them in dataset order, writes the entry and
   removes the shard folder.

Resuming: run the same command again. A rank whose shard verifies (same key, same rows, intact
payload) skips its work; a shard that was being written when the run died never got its JSON, so
it does not count and is recomputed. A merged entry already in the cache ends the run at step 1.

Backends: ``gloo`` on CPUs, ``nccl`` on CUDA GPUs (one per local rank); ``auto`` picks by device.

On a Slurm cluster the same run is one job of N tasks, one per GPU (``python -m unirepclip extract
--executor slurm ...``, :mod:`unirepclip.workbook.extract_slurm`): each task exports the
environment torchrun would set and calls :func:`run_args`; a requeued job resumes as above.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from unirepclip.data.registry import DATASETS, dataset_names, load_dataset
from unirepclip.features.extract import (
    finish_embeddings,
    FeatureCache,
    FeatureSet,
    extract_image_features,
    image_feature_key,
    model_identity,
    resolve_image_transform,
)

__all__ = ["DistContext", "ShardError", "partition", "shard_dir", "shard_name", "init_distributed",
           "extract_shard", "merge_shards", "extract_distributed", "build_dataset", "main",
           "build_parser", "run_args", "pick_backend", "BACKENDS"]

_logger = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")
SHARD_FORMAT = 1


class ShardError(RuntimeError):
    """A shard is missing, damaged or does not fit the run being merged."""


# ------------------------------------------------------------------------------------------------
# Partition and shard files
# ------------------------------------------------------------------------------------------------
def partition(n: int, world_size: int) -> List[range]:
    """Cut rows ``0..n-1`` into ``world_size`` contiguous, disjoint ranges, in rank order.

    The first ``n % world_size`` ranges hold one row more; a range may be empty (``n`` smaller
    than the world). Nothing is padded: the ranges concatenate to exactly ``range(n)``.
    """
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    base, extra = divmod(n, world_size)
    out, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def _rows_sha256(rows: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()


def shard_dir(cache: FeatureCache, key: str) -> Path:
    """The folder that holds the shards of entry ``key`` while a distributed run is under way."""
    return cache.root / f"{key}.shards"


def shard_name(rank: int, world_size: int) -> str:
    """``rank{r}-of-{N}``: the stem of a shard's ``.npz`` / ``.json`` (N in the name so a run
    with another world size never mistakes these rows for its own)."""
    return f"rank{rank}-of-{world_size}"


def _load_shard(store: FeatureCache, rank: int, world_size: int, key: str,
                rows: Sequence[int]) -> Optional[Tuple[Dict[str, np.ndarray], Dict[str, Any]]]:
    """A verified shard, or ``None`` (a damaged or foreign one is removed so it gets rebuilt)."""
    name = shard_name(rank, world_size)
    hit = store.load(name)  # checks the payload's sha256, removes a damaged entry
    if hit is None:
        return None
    arrays, meta = hit
    shard = meta.get("shard", {})
    problem = None
    if shard.get("key") != key:
        problem = f"was made for entry {shard.get('key')}, not {key}"
    elif shard.get("rows_sha256") != _rows_sha256(rows) or shard.get("n_rows") != len(rows):
        problem = "covers other rows than this rank's"
    if problem:
        _logger.warning("shard %s/%s %s; recomputing it", store.root, name, problem)
        store.invalidate(name)
        return None
    return arrays, meta


@dataclasses.dataclass
class ShardResult:
    """What :func:`extract_shard` did: ``resumed`` is true when a finished shard was kept."""

    rank: int
    world_size: int
    rows: range
    n_features: int
    resumed: bool
    seconds: float
    path: Path


def extract_shard(model: nn.Module, dataset: Any, *, cache: FeatureCache, key: str,
                  rank: int = 0, world_size: int = 1, transform: Optional[Callable] = None,
                  batch_size: int = 64, num_workers: int = 0,
                  device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                  progress: bool = True, model_ident: Optional[Dict[str, Any]] = None
                  ) -> ShardResult:
    """Extract this rank's rows (see :func:`partition`) into its shard, unless a verified shard
    is already there; needs no process group (the caller sequences the ranks).

    ``key`` is the whole dataset's cache key (:func:`~unirepclip.features.image_feature_key`);
    the other arguments are those of :func:`~unirepclip.features.extract_image_features`.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} is not in 0..{world_size - 1}")
    rows = partition(len(dataset), world_size)[rank]
    store = FeatureCache(shard_dir(cache, key))
    name = shard_name(rank, world_size)
    t0 = time.perf_counter()
    hit = _load_shard(store, rank, world_size, key, rows)
    if hit is not None:
        _logger.info("rank %d: shard %s is complete; kept", rank, name)
        return ShardResult(rank, world_size, rows, len(hit[0]["indices"]), True,
                           time.perf_counter() - t0, store.paths(name)[0])
    fs = extract_image_features(model, dataset, transform=transform, batch_size=batch_size,
                                num_workers=num_workers, device=device, precision=precision,
                                normalize=False, cache=None, progress=progress,
                                model_ident=model_ident, indices=rows)
    if fs.key != key:
        raise ShardError(f"rank {rank}: the features' key {fs.key} is not the run's key {key}; "
                         f"the model, data or transform changed under the run")
    arrays: Dict[str, np.ndarray] = {"embeddings": fs.embeddings, "indices": fs.indices}
    if fs.pre_projection is not None:
        arrays["pre_projection"] = fs.pre_projection
    if fs.labels is not None:
        arrays["labels"] = fs.labels
    meta = {"shard": {"format": SHARD_FORMAT, "key": key, "rank": rank, "world_size": world_size,
                      "start": rows.start, "stop": rows.stop, "n_rows": len(rows),
                      "rows_sha256": _rows_sha256(rows)},
            "skipped": fs.skipped, "seconds": fs.meta["seconds"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    store.save(name, arrays, meta)
    return ShardResult(rank, world_size, rows, len(fs.indices), False, time.perf_counter() - t0,
                       store.paths(name)[0])


def merge_shards(cache: FeatureCache, key: str, parts: Dict[str, Any], dataset: Any,
                 world_size: int, *, normalize: bool = True, remove: bool = True,
                 extra_meta: Optional[Dict[str, Any]] = None) -> FeatureSet:
    """Verify the ``world_size`` shards of ``key``, write them as one cache entry, return it.

    The entry has the layout :func:`~unirepclip.features.extract_image_features` writes (rows in
    dataset order, the dataset's scan-time ``skipped`` list first, then each shard's). ``remove``
    deletes the shard folder once the entry is committed.

    Raises:
        ShardError: a shard is missing or damaged, was made for another key or other rows, holds a
            row twice or outside its range, or accounts for fewer rows than it was given.
    """
    store = FeatureCache(shard_dir(cache, key))
    ranges = partition(len(dataset), world_size)
    shards: List[Tuple[Dict[str, np.ndarray], Dict[str, Any]]] = []
    for r, rows in enumerate(ranges):
        hit = _load_shard(store, r, world_size, key, rows)
        if hit is None:
            raise ShardError(f"shard {store.root / shard_name(r, world_size)}.npz is missing or "
                             f"incomplete; run the same command again to finish it")
        idx = hit[0]["indices"]
        unread = len(hit[1].get("skipped", []))
        if (len(np.unique(idx)) != len(idx) or (len(idx) and (idx.min() < rows.start
                                                               or idx.max() >= rows.stop))
                or len(idx) + unread != len(rows)):
            raise ShardError(f"shard {shard_name(r, world_size)}: its {len(idx)} rows and {unread} "
                             f"unreadable files do not cover rows {rows.start}..{rows.stop - 1} "
                             f"exactly once")
        shards.append(hit)
    full = [s for s in shards if len(s[0]["indices"])]
    if not full:
        raise ValueError(f"{dataset!r}: no image could be read")
    arrays: Dict[str, np.ndarray] = {}
    for name in ("embeddings", "indices", "pre_projection", "labels"):
        # an array some shard lacks (labels of an odd kind) is left out, as one process would
        if all(name in s[0] for s in full):
            arrays[name] = np.concatenate([s[0][name] for s in full])
    order = np.argsort(arrays["indices"], kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        arrays = {k: v[order] for k, v in arrays.items()}
    skipped = [tuple(s) for s in getattr(dataset, "skipped", [])]
    for _, meta in shards:
        skipped += [tuple(s) for s in meta.get("skipped", [])]
    meta = {"parts": parts, "skipped": skipped,
            "seconds": float(sum(m.get("seconds", 0.0) for _, m in shards)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "distributed": {"world_size": world_size,
                            "shards": [{**m["shard"], "payload_sha256": m["payload_sha256"],
                                        "created": m["created"], "seconds": m.get("seconds")}
                                       for _, m in shards],
                            **(extra_meta or {})}}
    cache.save(key, arrays, meta)
    if remove:
        shutil.rmtree(store.root, ignore_errors=True)
    return FeatureSet(kind="image", embeddings=finish_embeddings(arrays["embeddings"], normalize),
                      pre_projection=arrays.get("pre_projection"),
                      labels=arrays.get("labels"), indices=arrays["indices"], skipped=skipped,
                      key=key, from_cache=False, meta=meta)


# ------------------------------------------------------------------------------------------------
# The process group
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DistContext:
    """Where this process stands: ``initialized`` is false for a plain, single process."""

    rank: int
    world_size: int
    local_rank: int
    backend: Optional[str]
    device: torch.device
    initialized: bool

    def barrier(self) -> None:
        if self.initialized:
            dist.barrier()


def pick_backend(backend: str, device: torch.device) -> str:
    """The process group's backend for ``backend`` (``auto``: NCCL on CUDA, gloo on the CPU);
    a ValueError names a backend that cannot run on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if device.type != "cuda":
            raise ValueError(f"--backend nccl needs --device cuda (NCCL runs on CUDA GPUs only); "
                             f"got --device {device.type}: use --backend gloo for CPUs")
        if not dist.is_nccl_available():
            raise RuntimeError("--backend nccl: this PyTorch build has no NCCL; use gloo")
    return backend


def init_distributed(backend: str = "auto", device: str = "cpu",
                     timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``), or run alone when those are absent.

    ``device="cuda"`` gives each rank ``cuda:LOCAL_RANK``. ``backend="auto"``: NCCL on CUDA, gloo
    on the CPU.
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r} must be cpu or cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but CUDA is not available here; use "
                               "--device cpu (with --backend gloo or auto)")
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} has no GPU: this machine has "
                               f"{torch.cuda.device_count()}; lower --nproc_per_node")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    name = pick_backend(backend, dev)
    # Under torchrun the group is joined even at world size 1, so that run takes the same path.
    launched = "MASTER_ADDR" in os.environ and "RANK" in os.environ
    if not dist.is_initialized() and world == 1 and not launched:
        return DistContext(0, 1, 0, None, dev, False)
    if not dist.is_initialized():
        if not launched:
            raise RuntimeError(f"WORLD_SIZE={world} but MASTER_ADDR or RANK is not set: launch "
                               f"with torchrun")
        kwargs: Dict[str, Any] = {}
        if dev.type == "cuda":
            kwargs["device_id"] = dev  # binds NCCL to this rank's GPU up front
        dist.init_process_group(name, timeout=datetime.timedelta(minutes=timeout_minutes),
                                **kwargs)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(), dev,
                       True)


def _gather(obj: Any, ctx: DistContext) -> List[Any]:
    if not ctx.initialized:
        return [obj]
    out: List[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any, ctx: DistContext) -> Any:
    if not ctx.initialized:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def extract_distributed(model: nn.Module, dataset: Any, *, cache: FeatureCache,
                        transform: Optional[Callable] = None, batch_size: int = 64,
                        num_workers: int = 0, device: Union[str, torch.device] = "cpu",
                        precision: str = "fp32", normalize: bool = True, progress: bool = True,
                        model_ident: Optional[Dict[str, Any]] = None, keep_shards: bool = False,
                        ctx: Optional[DistContext] = None) -> Optional[FeatureSet]:
    """:func:`~unirepclip.features.extract_image_features` into ``cache``, split over the ranks of
    the process group (or alone without one); see the module doc for the protocol.

    Every rank must call it with the same model weights, dataset and arguments (checked through
    the cache key). Returns the merged :class:`~unirepclip.features.FeatureSet` on rank 0 and
    ``None`` on the others (which need not hold all N rows in memory). ``keep_shards`` leaves the
    shard folder in place after the merge.
    """
    if ctx is None:
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), 0, dist.get_backend(),
                          torch.device(device), True) if dist.is_initialized() else \
            DistContext(0, 1, 0, None, torch.device(device), False)
    transform = resolve_image_transform(model, dataset, transform)
    if model_ident is None:
        model_ident = model_identity(model)
    key, parts = image_feature_key(model, dataset, transform, precision=precision, device=device,
                                   model_ident=model_ident)
    keys = _gather(key, ctx)
    if len(set(keys)) != 1:
        odd = [r for r, k in enumerate(keys) if k != keys[0]]
        raise RuntimeError(f"ranks {odd} computed another cache key than rank 0 ({keys[0]}): "
                           f"their checkpoint, model config, dataset or transform differ")
    done = None
    if ctx.rank == 0:
        hit = cache.load(key)
        if hit is not None:
            arrays, meta = hit
            done = FeatureSet(kind="image", embeddings=finish_embeddings(arrays["embeddings"], normalize),
                              pre_projection=arrays.get("pre_projection"),
                              labels=arrays.get("labels"), indices=arrays["indices"],
                              skipped=[tuple(s) for s in meta.get("skipped", [])], key=key,
                              from_cache=True, meta=meta)
    if _broadcast(done is not None, ctx):
        if ctx.rank == 0:
            _logger.info("entry %s is already in %s", key, cache.root)
        return done
    if ctx.rank == 0:
        shard_dir(cache, key).mkdir(parents=True, exist_ok=True)
    ctx.barrier()  # the shard folder exists before anybody writes into it
    result = extract_shard(model, dataset, cache=cache, key=key, rank=ctx.rank,
                           world_size=ctx.world_size, transform=transform, batch_size=batch_size,
                           num_workers=num_workers, device=device, precision=precision,
                           progress=progress and ctx.rank == 0, model_ident=model_ident)
    results = _gather(dataclasses.asdict(result), ctx)  # also the barrier before the merge
    if ctx.rank != 0:
        return None
    failed = [r for r, res in enumerate(results) if res is None]
    if failed:
        raise ShardError(f"rank(s) {failed} failed before committing their shards; run the same "
                         f"command again to finish (committed shards are kept)")
    return merge_shards(cache, key, parts, dataset, ctx.world_size, normalize=normalize,
                        remove=not keep_shards,
                        extra_meta={"backend": ctx.backend or "none",
                                    "resumed": [r["rank"] for r in results if r["resumed"]]})


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def build_dataset(name: str, *, data_root: Optional[str] = None, split: Optional[str] = None,
                  n: Optional[int] = None, image_size: int = 64, seed: int = 0,
                  target: str = "shape", classnames: str = "auto") -> Any:
    """The dataset the command line names, through the resolver the notebooks use
    (:func:`unirepclip.data.registry.load_dataset`), so the cache keys agree.

    ``name``: any registered dataset (``--dataset``). ``data_root`` (``--data-root``): where a
    dataset read from files has them (an image folder, a CLIP_benchmark root; ``{dataset}``
    stands for the name), as a notebook's ``data_dir``. ``n`` (``--n-images``): images, default
    1000 for the endless synthetic world and all for a finite set; ``split``: default the
    dataset's evaluated one (``test``; an image folder's ``all`` is ``data_root`` itself).
    ``classnames`` (a set named by class folders): ``"auto"`` (open_clip's ImageNet names for
    1000 folders, else the folder names), ``"folders"``, a registered vocabulary or a file.
    """
    if name not in dataset_names():
        raise ValueError(f"--dataset {name!r} is not one of {dataset_names()}")
    spec = DATASETS[name]
    if not spec.layout and data_root is not None:
        raise ValueError(f"--data-root applies to datasets read from files, not {name} "
                         f"({spec.summary})")
    if spec.layout and data_root is None:
        raise ValueError(f"--dataset {name} needs --data-root DIR, a folder holding "
                         f"{spec.layout}")
    if not spec.vocabulary and classnames != "auto":
        raise ValueError(f"--classnames applies to datasets named by class folders, not {name}")
    classnames_file = ""
    if spec.layout:
        root = Path(spec.data_root(data_root))
        if not root.is_dir():
            raise FileNotFoundError(f"--data-root {root} does not exist or is not a folder")
        if spec.vocabulary and classnames == "auto":
            n_folders = sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            classnames = "imagenet" if n_folders == 1000 else "folders"
        classnames_file = "" if classnames in ("auto", "folders") else classnames
    if n is None:
        n = 1000 if spec.endless else 0
    return load_dataset(name, split, n=n, image_size=image_size, seed=seed,
                        data_dir=data_root or "", classnames_file=classnames_file, target=target)


def build_parser() -> argparse.ArgumentParser:
    """The ``extract`` command's arguments (the Slurm executor adds its own group to it)."""
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m unirepclip extract",
        description="Extract image features on N processes into the feature cache the "
                    "notebooks read (also runs as a single process without torchrun).")
    from unirepclip.models.params import PARAMETERS as MODEL_PARAMETERS

    meaning = {d.name: d.meaning for d in MODEL_PARAMETERS}  # as a notebook's parameters
    p.add_argument("--model", required=True, help=meaning["model_name"])
    p.add_argument("--checkpoint", default=None,
                   help=meaning["checkpoint"] + "; omitted: '' (random weights, drawn the "
                   "same on every rank: --seed)")
    p.add_argument("--dataset", required=True, choices=dataset_names(),
                   help="a registered dataset, as a notebook's dataset parameter", metavar="NAME")
    p.add_argument("--data-root", default=None,
                   help="where a dataset read from files has them: an image folder, a "
                        "CLIP_benchmark root ('{dataset}' stands for the name); a notebook's "
                        "data_dir")
    p.add_argument("--classnames", default="auto",
                   help="class names of an image folder: auto, folders, imagenet or a file")
    p.add_argument("--split", default=None,
                   help="the split (default: the dataset's evaluated one, test; imagefolder: "
                        "all = the --data-root itself, else its sub-folder)")
    # Not "--n": torchrun's own parser reads abbreviations past the script name, and "--n" is
    # an ambiguous prefix of its --nnodes / --nproc-per-node / --node-rank.
    p.add_argument("--n-images", type=int, default=None,
                   help="images: synthetic renders that many (default 1000); a finite set takes "
                        "a seeded random subset, as the notebooks' n_images (default all)")
    p.add_argument("--image-size", type=int, default=None,
                   help="synthetic/digits image side (default: the model's)")
    p.add_argument("--target", default="shape", help="synthetic target (shape, colour, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", required=True, help="the feature cache folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--timeout-minutes", type=float, default=30.0,
                   help="how long a collective may wait for the slowest rank")
    p.add_argument("--keep-shards", action="store_true",
                   help="leave <cache-dir>/<key>.shards in place after the merge")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (see ``--help``); returns the exit status."""
    return run_args(build_parser().parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    """The extraction :func:`build_parser`'s arguments describe, in this process: one rank of the
    group the environment describes (torchrun's variables), or alone; returns the exit status."""
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size {args.batch_size} must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        ctx = init_distributed(args.backend, args.device, args.timeout_minutes)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"unirepclip extract: error: {err}") from None
    try:
        from unirepclip.models.factory import create_model
        from unirepclip.models.pretrained import resolve_checkpoint
        from unirepclip.utils import set_seed

        set_seed(args.seed)  # random weights (no checkpoint) are then the same on every rank
        # the model decides what 'demo' names and whether a pretrained tag is one of its own
        model = create_model(args.model, resolve_checkpoint(args.checkpoint, args.model),
                             device=ctx.device)
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        try:
            dataset = build_dataset(args.dataset, data_root=args.data_root, split=args.split,
                                    n=args.n_images, image_size=args.image_size or size,
                                    seed=args.seed, target=args.target,
                                    classnames=args.classnames)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"unirepclip extract: error: {err}") from None
        t0 = time.perf_counter()
        fs = extract_distributed(model, dataset, cache=FeatureCache(args.cache_dir),
                                 batch_size=args.batch_size, num_workers=args.num_workers,
                                 device=ctx.device, precision=args.precision,
                                 progress=not args.no_progress, keep_shards=args.keep_shards,
                                 ctx=ctx)
        if fs is not None:
            state = "already cached" if fs.from_cache else (
                f"extracted on {ctx.world_size} process(es) in {time.perf_counter() - t0:.1f} s")
            print(f"{len(fs)} image features of {dataset!r} {state}: "
                  f"{Path(args.cache_dir) / fs.key}.npz ({len(fs.skipped)} unreadable skipped)",
                  flush=True)
        # every rank done before any tears the group down: a rank leaving while rank 0 still
        # merges was seen to abort (gloo: "terminate called without an active exception")
        ctx.barrier()
    finally:
        if ctx.initialized:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
