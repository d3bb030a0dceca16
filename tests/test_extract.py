"""Tests for unirepclip.features.distributed: the row partition, shards, their merge and resumption, and the
``torchrun`` command on two CPU processes (gloo) against a single-process extraction."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unirepclip
from unirepclip.data import ImageFolderDataset, SyntheticShapes
from unirepclip.training.demo import save_checkpoint
from unirepclip.features.distributed import (
    ShardError,
    build_dataset,
    extract_distributed,
    extract_shard,
    init_distributed,
    merge_shards,
    partition,
    shard_dir,
    shard_name,
)
from unirepclip.features import FeatureCache, extract_image_features, model_identity

MODEL = "UniRepLKNet-Demo"
N_IMAGES = 31  # odd: two ranks get 16 and 15 rows


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(1234)
    model = unirepclip.create_model(MODEL)
    path = tmp_path_factory.mktemp("ckpt") / "random-demo.safetensors"
    save_checkpoint(model, path, dtype=torch.float32)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return unirepclip.create_model(MODEL, str(checkpoint))


@pytest.fixture(scope="module")
def ident(model):
    return model_identity(model)


@pytest.fixture(scope="module")
def shapes():
    # Built as a notebook builds it (no dataset transform: the model's preprocessing applies).
    return SyntheticShapes(split="test", n=N_IMAGES, image_size=64, seed=0)


@pytest.fixture(scope="module")
def want(model, shapes, ident):
    """The single-process reference for ``shapes``."""
    return extract_image_features(model, shapes, batch_size=8, progress=False, model_ident=ident)


@pytest.fixture(scope="module")
def small():
    return SyntheticShapes(split="val", n=7, image_size=64, seed=3)


@pytest.fixture(scope="module")
def small_want(model, small, ident):
    return extract_image_features(model, small, batch_size=8, progress=False, model_ident=ident)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def _assert_same(got, want):
    assert got.key == want.key
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.embeddings.shape == want.embeddings.shape
    assert got.pre_projection.shape == want.pre_projection.shape
    assert _rel(got.embeddings, want.embeddings) <= 1e-5
    assert _rel(got.pre_projection, want.pre_projection) <= 1e-5
    assert [tuple(s) for s in got.skipped] == [tuple(s) for s in want.skipped]


# ------------------------------------------------------------------------------------------------
# Partition
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(31, 2), (7, 3), (2, 4), (0, 2), (12, 4), (1, 1)])
def test_partition_covers_every_row_once_contiguously(n, world):
    ranges = partition(n, world)
    assert len(ranges) == world
    rows = [i for r in ranges for i in r]
    assert rows == list(range(n))  # in order, each row once, nothing padded
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the larger ranges come first


def test_partition_sizes_by_hand():
    assert [(r.start, r.stop) for r in partition(31, 2)] == [(0, 16), (16, 31)]
    assert [(r.start, r.stop) for r in partition(7, 3)] == [(0, 3), (3, 5), (5, 7)]
    with pytest.raises(ValueError, match="world_size"):
        partition(3, 0)


# ------------------------------------------------------------------------------------------------
# extract_image_features(indices=...) and in-process shards
# ------------------------------------------------------------------------------------------------
def test_indices_extracts_those_rows_with_dataset_row_numbers(model, small, small_want, ident):
    full = small_want
    rows = [6, 1, 4]
    part = extract_image_features(model, small, batch_size=2, progress=False, model_ident=ident,
                                  indices=rows)
    np.testing.assert_array_equal(part.indices, rows)
    assert part.key == full.key  # the key is always the whole dataset's
    assert _rel(part.embeddings, full.embeddings[rows]) <= 1e-5
    np.testing.assert_array_equal(part.labels, full.labels[rows])
    empty = extract_image_features(model, small, progress=False, model_ident=ident, indices=[])
    assert len(empty) == 0
    with pytest.raises(ValueError, match="cache=None"):
        extract_image_features(model, small, progress=False, model_ident=ident, indices=rows,
                               cache=FeatureCache("unused"))


def _shards_in_process(model, dataset, cache, world, ident, **kw):
    key = extract_image_features(model, dataset, progress=False, model_ident=ident,
                                 indices=[]).key
    results = [extract_shard(model, dataset, cache=cache, key=key, rank=r, world_size=world,
                             batch_size=4, progress=False, model_ident=ident, **kw)
               for r in range(world)]
    return key, results


def test_shards_merged_in_process_equal_one_process_and_hit_the_cache(tmp_path, model, small,
                                                                       small_want, ident):
    cache = FeatureCache(tmp_path)
    key, results = _shards_in_process(model, small, cache, 3, ident)
    assert [r.n_features for r in results] == [3, 2, 2]
    parts = extract_image_features(model, small, progress=False, model_ident=ident,
                                   indices=[]).meta["parts"]
    got = merge_shards(cache, key, parts, small, 3)
    _assert_same(got, small_want)
    assert not shard_dir(cache, key).exists()  # removed after the merge
    # The notebooks' call finds the merged entry as a cache hit with the same arrays.
    hit = extract_image_features(model, small, progress=False, model_ident=ident, cache=cache)
    assert hit.from_cache
    _assert_same(hit, small_want)


def test_more_ranks_than_rows_leaves_empty_shards_that_merge_cleanly(tmp_path, model, ident):
    tiny = SyntheticShapes(split="val", n=3, image_size=64, seed=5)  # 3 rows, 5 ranks
    want = extract_image_features(model, tiny, progress=False, model_ident=ident)
    cache = FeatureCache(tmp_path)
    key, results = _shards_in_process(model, tiny, cache, 5, ident)
    assert [r.n_features for r in results] == [1, 1, 1, 0, 0]
    got = merge_shards(cache, key, want.meta["parts"], tiny, 5)
    _assert_same(got, want)


def test_finished_shard_is_kept_and_damaged_or_partial_ones_are_redone(tmp_path, model, small,
                                                                       small_want, ident):
    cache = FeatureCache(tmp_path)
    key, first = _shards_in_process(model, small, cache, 3, ident)
    assert not any(r.resumed for r in first)
    store = FeatureCache(shard_dir(cache, key))
    npz = [store.paths(shard_name(r, 3))[0] for r in range(3)]
    before = [p.stat().st_mtime_ns for p in npz]
    # rank 1: a payload damaged after its commit; rank 2: a torn write (payload, no JSON marker)
    raw = bytearray(npz[1].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz[1].write_bytes(bytes(raw))
    store.paths(shard_name(2, 3))[1].unlink()
    _, again = _shards_in_process(model, small, cache, 3, ident)
    assert [r.resumed for r in again] == [True, False, False]
    assert npz[0].stat().st_mtime_ns == before[0]
    _assert_same(merge_shards(cache, key, small_want.meta["parts"], small, 3), small_want)


def test_shard_made_for_other_rows_is_not_reused(tmp_path, model, small, ident):
    cache = FeatureCache(tmp_path)
    key, _ = _shards_in_process(model, small, cache, 2, ident)
    store = FeatureCache(shard_dir(cache, key))
    meta_path = store.paths(shard_name(0, 2))[1]
    meta = json.loads(meta_path.read_text())
    meta["shard"]["rows_sha256"] = "0" * 64  # as if written for another partition
    meta_path.write_text(json.dumps(meta))
    _, again = _shards_in_process(model, small, cache, 2, ident)
    assert [r.resumed for r in again] == [False, True]


def test_merge_names_a_missing_shard(tmp_path, model, small, ident):
    cache = FeatureCache(tmp_path)
    key, _ = _shards_in_process(model, small, cache, 2, ident)
    FeatureCache(shard_dir(cache, key)).invalidate(shard_name(1, 2))
    with pytest.raises(ShardError, match="rank1-of-2"):
        merge_shards(cache, key, {}, small, 2)
    assert key not in cache  # nothing half-merged


def test_unreadable_image_is_reported_once_across_shards(tmp_path, model, ident):
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(
                root / cls / f"{i}.png")
    (root / "a" / "notes.txt").write_text("not an image")  # skipped at scan time
    ds = ImageFolderDataset(root)
    (root / "b" / "1.png").write_bytes(b"\x89PNG broken after the scan")  # skipped at load time
    want = extract_image_features(model, ds, progress=False, model_ident=ident)
    assert len(want) == 5 and len(want.skipped) == 2
    cache = FeatureCache(tmp_path / "cache")
    key, _ = _shards_in_process(model, ds, cache, 2, ident)
    _assert_same(merge_shards(cache, key, want.meta["parts"], ds, 2), want)


def test_single_process_run_and_second_run_is_a_cache_hit(tmp_path, model, small, small_want,
                                                           ident):
    cache = FeatureCache(tmp_path)
    got = extract_distributed(model, small, cache=cache, batch_size=8, progress=False,
                              model_ident=ident)
    _assert_same(got, small_want)
    assert got.meta["distributed"]["world_size"] == 1
    again = extract_distributed(model, small, cache=cache, progress=False, model_ident=ident)
    assert again.from_cache
    _assert_same(again, small_want)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def test_bad_backend_and_device_are_named(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="--backend nccl needs --device cuda"):
        init_distributed("nccl", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            init_distributed("auto", "cuda")
    with pytest.raises(ValueError, match="--backend 'mpi'"):
        init_distributed("mpi", "cpu")
    ctx = init_distributed("auto", "cpu")  # no torchrun environment: alone, no process group
    assert (ctx.rank, ctx.world_size, ctx.initialized) == (0, 1, False)


def test_bad_dataset_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="--dataset 'cifar'"):
        build_dataset("cifar")
    with pytest.raises(ValueError, match="--data-root applies to datasets read from files, not "
                                         "digits"):
        build_dataset("digits", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="needs --data-root"):
        build_dataset("imagefolder")
    with pytest.raises(ValueError, match="--dataset cifar10 needs --data-root DIR, a folder "
                                         "holding cifar-10-batches-py"):
        build_dataset("cifar10")
    with pytest.raises(ValueError, match="--classnames applies to datasets named by class "
                                         "folders, not cifar10"):
        build_dataset("cifar10", data_root=str(tmp_path), classnames="imagenet")
    with pytest.raises(FileNotFoundError, match="--data-root"):
        build_dataset("imagefolder", data_root=str(tmp_path / "nope"))


def test_command_line_datasets_are_the_notebooks_datasets(tmp_path):
    """--dataset/--n-images resolve to the very rows a notebook's dataset/n_images give, so the
    cache key (which holds the dataset's identity) is the one the notebook looks up."""
    from unirepclip.data.sets import classification_set

    for name, n in (("digits", 5), ("digits", 0), ("skimage", 3), ("synthetic", 4)):
        notebook = classification_set(name, n_images=n, image_size=32, seed=2).dataset
        cli = build_dataset(name, n=n, image_size=32, seed=2)
        assert cli.identity == notebook.identity, name
        assert len(cli) == len(notebook)
    # the command's defaults: 1000 synthetic images, all of a finite set
    assert len(build_dataset("synthetic", image_size=32)) == 1000
    assert build_dataset("digits").identity == \
        classification_set("digits", n_images=0).dataset.identity
    for c, cls in enumerate(("b", "a")):
        for split in ("val", "test"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8), (c, 0, 0)).save(tmp_path / split / cls / "x.png")
    folder = build_dataset("imagefolder", data_root=str(tmp_path / "test"))
    assert folder.identity == classification_set(
        "imagefolder", n_images=0, data_dir=str(tmp_path / "test")).dataset.identity
    assert folder.classes == ["a", "b"] and folder.targets == [0, 1]
    # --split names a sub-folder of --data-root
    assert build_dataset("imagefolder", data_root=str(tmp_path), split="val").root == \
        tmp_path / "val"


def _write_cifar10(root: Path, n: int = 6) -> list:
    """CIFAR-10's python batches (pickled dicts of channel-major rows), ``n`` images each; the
    test batch's labels are returned."""
    import pickle

    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for k, f in enumerate(["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]):
        rows = np.stack([np.full((3, 32, 32), 20 * k + i, np.uint8) for i in range(n)])
        with open(d / f, "wb") as fh:
            pickle.dump({"data": rows.reshape(n, -1), "labels": [(k + i) % 10 for i in range(n)]},
                        fh)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class {c}" for c in range(10)]}, fh)
    return [i % 10 for i in range(n)]


def test_extract_command_reads_a_benchmark_by_name_from_data_root(tmp_path, monkeypatch,
                                                                   checkpoint, model, ident):
    """``extract --dataset cifar10 --data-root DIR`` fills the entry notebook 02 looks up when
    its dataset is cifar10 and its data_dir DIR."""
    import os as _os

    import torchvision.datasets.cifar as cifar

    from unirepclip.cli import main
    from unirepclip.data.sets import classification_set

    # torchvision md5-checks CIFAR's files against the real release; these are only its format
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: _os.path.isfile(path))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    labels = _write_cifar10(tmp_path / "cifar10")
    cache = FeatureCache(tmp_path / "cache")
    assert main(["extract", "--model", MODEL, "--checkpoint", str(checkpoint),
                 "--dataset", "cifar10", "--data-root", str(tmp_path / "{dataset}"),
                 "--cache-dir", str(cache.root), "--batch-size", "4", "--no-progress"]) == 0
    evalset = classification_set("cifar10", n_images=0, data_dir=str(tmp_path / "cifar10"))
    got = extract_image_features(model, evalset.dataset, progress=False, model_ident=ident,
                                 cache=cache)
    assert got.from_cache and cache.keys() == [got.key]
    assert got.labels.tolist() == labels == evalset.tasks["cifar10"].labels.tolist()


def test_extract_command_reads_demo_as_the_model_s_own(tmp_path, monkeypatch):
    """``--checkpoint demo`` is the demo recipe's weights for ``--model`` (its 3x3 control's for
    UniRepLKNet-Demo-SmallKernel, not the demo CLIP's), as in a notebook; the entry's model is
    the one a notebook loads."""
    from unirepclip.cli import main
    from unirepclip.models.pretrained import resolve_checkpoint

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    small = "UniRepLKNet-Demo-SmallKernel"
    cache = FeatureCache(tmp_path)
    assert main(["extract", "--model", small, "--checkpoint", "demo", "--dataset", "synthetic",
                 "--n-images", "3", "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    want = unirepclip.create_model(small, resolve_checkpoint("demo", small))
    data = SyntheticShapes(split="test", n=3, image_size=want.visual.image_size[0], seed=0)
    got = extract_image_features(want, data, progress=False, cache=cache)
    assert got.from_cache and cache.keys() == [got.key]


# ------------------------------------------------------------------------------------------------
# torchrun, two CPU processes, gloo
# ------------------------------------------------------------------------------------------------
CRASH_ONE_RANK = Path(__file__).with_name("extract_crash_one_rank.py")


def _torchrun(checkpoint, cache_dir, *extra, crash_rank=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the real command, or the test's wrapper around the same entry point that crashes one rank
    program = ["-m", "unirepclip", "extract"] if crash_rank is None else \
        [str(CRASH_ONE_RANK), str(crash_rank)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *program, "--model", MODEL, "--checkpoint", str(checkpoint),
           "--dataset", "synthetic", "--split", "test", "--n-images", str(N_IMAGES),
           "--cache-dir", str(cache_dir), "--batch-size", "8", "--backend", "gloo",
           "--no-progress", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_gloo_ranks_match_one_process(tmp_path, checkpoint, model, shapes, want,
                                                    ident):
    proc = _torchrun(checkpoint, tmp_path / "dist")
    assert proc.returncode == 0, proc.stderr[-4000:]
    cache = FeatureCache(tmp_path / "dist")
    assert cache.keys() == [want.key]  # the same entry the notebooks' call looks up
    assert not shard_dir(cache, want.key).exists()
    got = extract_image_features(model, shapes, progress=False, model_ident=ident, cache=cache)
    assert got.from_cache
    _assert_same(got, want)
    assert sorted(got.indices.tolist()) == list(range(N_IMAGES))  # none missing, none twice
    shards = got.meta["distributed"]["shards"]
    assert [(s["start"], s["stop"]) for s in shards] == [(0, 16), (16, 31)]
    assert got.meta["distributed"]["backend"] == "gloo"


@pytest.mark.slow
def test_torchrun_interrupted_then_resumed_keeps_the_finished_shard(tmp_path, checkpoint, model,
                                                                    shapes, want, ident):
    cache = FeatureCache(tmp_path / "dist")
    store = FeatureCache(shard_dir(cache, want.key))
    r0, r1 = shard_name(0, 2), shard_name(1, 2)

    failed = _torchrun(checkpoint, cache.root, crash_rank=1)
    assert failed.returncode != 0
    assert "simulated failure" in failed.stdout + failed.stderr
    assert want.key not in cache  # no merged entry from a failed run
    assert r0 in store and r1 not in store
    npz0 = store.paths(r0)[0]
    mtime0, meta0 = npz0.stat().st_mtime_ns, json.loads(store.paths(r0)[1].read_text())
    # A torn write of rank 1 (payload without its JSON marker) must not count.
    store.paths(r1)[0].write_bytes(b"half a shard")

    resumed = _torchrun(checkpoint, cache.root, "--keep-shards")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert npz0.stat().st_mtime_ns == mtime0  # not recomputed
    got = extract_image_features(model, shapes, progress=False, model_ident=ident, cache=cache)
    assert got.from_cache
    _assert_same(got, want)
    dist_meta = got.meta["distributed"]
    assert dist_meta["resumed"] == [0]
    assert dist_meta["shards"][0]["payload_sha256"] == meta0["payload_sha256"]
    assert dist_meta["shards"][0]["created"] == meta0["created"]
