"""``python -m unirepclip extract`` with one rank crashing at the worst moment, for the
crash-and-resume test in ``test_extract.py``; run under torchrun as
``torchrun ... tests/extract_crash_one_rank.py FAIL_RANK <extract arguments>``.

Rank ``FAIL_RANK`` does not extract: it joins the peers' post-commit collective (so their
shards are on disk when it dies, which makes the outcome exact), then raises before committing
its own shard. The other ranks run the real extraction.
"""
import sys

from torch import distributed as dist

from unirepclip.features import distributed

FAIL_RANK = int(sys.argv.pop(1))
_real_extract_shard = distributed.extract_shard


def _extract_shard_or_crash(model, dataset, *, rank=0, world_size=1, **kwargs):
    if rank != FAIL_RANK:
        return _real_extract_shard(model, dataset, rank=rank, world_size=world_size, **kwargs)
    dist.all_gather_object([None] * world_size, None)  # pairs with the peers' gather of results
    raise RuntimeError(f"rank {rank}: simulated failure before committing its shard")


distributed.extract_shard = _extract_shard_or_crash

if __name__ == "__main__":
    sys.exit(distributed.main(sys.argv[1:]))
