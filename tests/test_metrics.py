"""Metrics against hand-computed cases: top-k with ties and k > classes, balanced recall,
recall@k with several positives."""
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from unirepclip.eval import metrics


# 4 samples, 3 classes. Hand ranks of the true class (ties broken by lower index first):
#   s0 label 2: [0.1, 0.2, 0.7] -> rank 0
#   s1 label 0: [0.5, 0.5, 0.0] tie with class 1, class 0 has the lower index -> rank 0
#   s2 label 1: [0.5, 0.5, 0.0] same tie, class 1 comes after class 0 -> rank 1
#   s3 label 0: [0.1, 0.3, 0.6] -> rank 2
LOGITS = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.1, 0.3, 0.6]])
LABELS = np.array([2, 0, 1, 0])


def test_topk_hand_computed_with_ties():
    r = metrics.topk_accuracy(LOGITS, LABELS, ks=(1, 2, 3))
    assert r == {"acc1": 0.5, "acc2": 0.75, "acc3": 1.0}


def test_top1_agrees_with_argmax_on_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, size=(200, 5)).astype(float)  # many ties
    y = rng.integers(0, 5, size=200)
    assert metrics.topk_accuracy(s, y, ks=(1,))["acc1"] == pytest.approx(np.mean(s.argmax(1) == y))


def test_k_larger_than_classes_is_clipped_but_keeps_its_name():
    r = metrics.topk_accuracy(LOGITS, LABELS, ks=(1, 5))
    assert r["acc5"] == 1.0 and r["acc1"] == 0.5


def test_topk_accepts_torch_and_matches_stable_sort():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(300, 7)).round(1)  # rounding makes ties common
    y = rng.integers(0, 7, size=300)
    order = np.argsort(-s, axis=1, kind="stable")
    rank = np.argmax(order == y[:, None], axis=1)
    got = metrics.topk_accuracy(torch.from_numpy(s), torch.from_numpy(y), ks=(1, 3))
    assert got["acc1"] == pytest.approx(np.mean(rank < 1))
    assert got["acc3"] == pytest.approx(np.mean(rank < 3))


def test_balanced_recall_hand_computed():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 0, 1, 1, 0, 0])
    # recalls: class 0 3/4, class 1 1/2, class 2 0/1 -> mean 5/12; plain accuracy 4/7
    assert metrics.mean_per_class_recall(y, p, 3) == pytest.approx(5 / 12)
    np.testing.assert_allclose(metrics.per_class_accuracy(y, p, 3), [0.75, 0.5, 0.0])
    assert metrics.mean_per_class_recall(y, p) == pytest.approx(balanced_accuracy_score(y, p))


def test_absent_class_is_nan_and_left_out():
    y = np.array([0, 0, 1])
    p = np.array([0, 2, 1])  # class 2 predicted but never true
    pca = metrics.per_class_accuracy(y, p, 4)
    assert pca[0] == 0.5 and pca[1] == 1.0 and np.isnan(pca[2]) and np.isnan(pca[3])
    assert metrics.mean_per_class_recall(y, p, 4) == pytest.approx(0.75)


def test_confusion_matrix_rows_are_truth():
    cm = metrics.confusion_matrix([0, 0, 1, 2], [1, 0, 1, 1], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


def test_recall_at_k_several_positives_hand_computed():
    # query 0: positives {1, 3}; order 2 (0.9), 3 (0.8), 1 (0.5), 0 (0.1): best positive at rank 1
    # query 1: positive {0} scores lowest of 4 -> rank 3
    # query 2: positives {0, 2} both tie with negative 1 at 0.5; order 0, 1, 2 -> rank 0
    s = np.array([[0.1, 0.5, 0.9, 0.8], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.0]])
    pos = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [1, 0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(metrics.ranks_of_first_positive(s, pos), [1, 3, 0])
    r = metrics.recall_at_k(s, pos, ks=(1, 2, 4, 10))
    assert r == {"r1": pytest.approx(1 / 3), "r2": pytest.approx(2 / 3), "r4": 1.0, "r10": 1.0}


def test_tie_between_negative_with_lower_index_and_positive():
    s = np.array([[0.7, 0.7, 0.1]])
    assert metrics.ranks_of_first_positive(s, np.array([[False, True, False]]))[0] == 1
    assert metrics.ranks_of_first_positive(s, np.array([[True, False, False]]))[0] == 0


def test_chunking_does_not_change_ranks():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(50, 30)).round(1)
    pos = rng.random((50, 30)) < 0.1
    pos[np.arange(50), rng.integers(0, 30, 50)] = True
    np.testing.assert_array_equal(metrics.ranks_of_first_positive(s, pos, chunk_size=7),
                                  metrics.ranks_of_first_positive(s, pos, chunk_size=1000))


def test_classification_report_bundle():
    r = metrics.classification_report(LOGITS, LABELS, ks=(1, 5))
    assert r["acc1"] == 0.5 and r["acc5"] == 1.0
    np.testing.assert_array_equal(r["predictions"], [2, 0, 0, 2])
    np.testing.assert_allclose(r["per_class_accuracy"], [0.5, 0.0, 1.0])
    assert r["mean_per_class_recall"] == pytest.approx(0.5)
    assert r["confusion_matrix"].sum() == 4


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.topk_accuracy(LOGITS, [0, 1, 5, 0]), "labels holds class index 5"),
    (lambda: metrics.topk_accuracy(LOGITS, [0, 1]), "labels has 2 entries"),
    (lambda: metrics.topk_accuracy(LOGITS[0], [0]), "logits must be 2-D"),
    (lambda: metrics.topk_accuracy(LOGITS, LABELS, ks=(0,)), "ks"),
    (lambda: metrics.topk_accuracy(np.full((1, 2), np.nan), [0]), "NaN"),
    (lambda: metrics.recall_at_k(np.zeros((2, 2)), np.array([[1, 0], [0, 0]])), "query 1"),
    (lambda: metrics.recall_at_k(np.zeros((2, 2)), np.ones((2, 3))), "positives has shape"),
    (lambda: metrics.mean_per_class_recall([0.5], [0]), "integer class indices"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_mcnemar_exact_against_hand_computed_binomials():
    from unirepclip.eval.metrics import mcnemar_exact
    # 8 items only A got right, 2 only B, 5 both, 3 neither:
    # p = 2 * P(X <= 2 | n = 10, 1/2) = 2 * (1 + 10 + 45) / 1024
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 3
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 3
    t = mcnemar_exact(np.array(a, bool), np.array(b, bool))
    assert (t["a_only"], t["b_only"]) == (8, 2)
    assert t["p_value"] == pytest.approx(112 / 1024, rel=1e-12)
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(112 / 1024, rel=1e-12)
    # no discordant item: no evidence either way
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == {"a_only": 0, "b_only": 0, "p_value": 1.0}
    # 10 to 0: p = 2 / 1024
    assert mcnemar_exact([1] * 10, [0] * 10)["p_value"] == pytest.approx(2 / 1024, rel=1e-12)
    with pytest.raises(ValueError, match="same test items"):
        mcnemar_exact([1, 0], [1, 0, 1])


def test_worst_case_tie_rule_hand_computed():
    s = np.array([[0.5, 0.5, 0.2], [0.5, 0.5, 0.2], [0.9, 0.5, 0.5]])
    pos = np.array([[False, True, False], [True, False, False], [False, False, True]])
    # by index: row 0's positive ties a lower index (rank 1), row 1's is first (rank 0), row 2
    # has 0.9 ahead and ties index 1 below it (rank 2)
    np.testing.assert_array_equal(metrics.ranks_of_first_positive(s, pos), [1, 0, 2])
    # worst case: every tied negative ranks ahead
    np.testing.assert_array_equal(metrics.ranks_of_first_positive(s, pos, ties="worst"),
                                  [1, 1, 2])
    assert metrics.recall_at_k(s, pos, ks=(1, 2), ties="worst") == {"r1": 0.0, "r2": 2 / 3}
    with pytest.raises(ValueError, match="ties='random'"):
        metrics.recall_at_k(s, pos, ties="random")


def test_worst_case_ranks_do_not_change_when_rows_and_columns_are_permuted():
    rng = np.random.default_rng(2)
    s = rng.integers(0, 4, size=(8, 10)).astype(np.float64) / 4  # many exact ties
    pos = rng.random((8, 10)) < 0.2
    pos[np.arange(8), rng.integers(0, 10, 8)] = True
    ref = metrics.recall_at_k(s, pos, ks=(1, 2, 3, 5), ties="worst")
    by_index_differs = False
    for seed in range(20):
        g = np.random.default_rng(seed)
        r, c = g.permutation(8), g.permutation(10)
        assert metrics.recall_at_k(s[r][:, c], pos[r][:, c], ks=(1, 2, 3, 5), ties="worst") == ref
        by_index_differs |= (metrics.recall_at_k(s[r][:, c], pos[r][:, c], ks=(1, 2, 3, 5))
                             != metrics.recall_at_k(s, pos, ks=(1, 2, 3, 5)))
    assert by_index_differs  # the matrix does hold ties that the index rule resolves by order
