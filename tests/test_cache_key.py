"""FeatureCache compares the key an entry records with the key asked for (issue 16): an entry
copied over another key's files (say the 96 px sweep's over the 64 px one) is a rebuild, not a hit."""
import shutil

import numpy as np

from unirepclip.features.extract import FeatureCache


def test_an_entry_under_the_wrong_key_is_rebuilt(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    k64 = FeatureCache.make_key({"image_size": 64})
    k96 = FeatureCache.make_key({"image_size": 96})
    cache.save(k64, {"emb": np.zeros((2, 3), np.float32)}, {"parts": {"image_size": 64}})
    cache.save(k96, {"emb": np.ones((2, 3), np.float32)}, {"parts": {"image_size": 96}})
    arrays, _ = cache.load(k64)
    assert arrays["emb"].sum() == 0  # a valid entry is a hit
    # The 96 px entry copied over the 64 px one: a payload whose sha256 matches its own record.
    for src, dst in zip(cache.paths(k96), cache.paths(k64)):
        shutil.copyfile(src, dst)
    with caplog.at_level("WARNING"):
        assert cache.load(k64) is None
    assert cache.rebuilt == 1 and k64 not in cache  # removed, so the caller rebuilds it
    assert "records key" in caplog.text and k96 in caplog.text
    assert cache.load(k96)[0]["emb"].sum() == 6  # the real 96 px entry is untouched
