"""Zero-shot classification: exact numbers on a constructed classifier, and the plumbing with the
tiny demo model (random weights)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import unirepclip
from unirepclip.eval import zeroshot

CLASSNAMES = ["circle", "square", "triangle", "star", "cross"]
TEMPLATES = ["a photo of a {}.", lambda c: f"a drawing of a {c}", "{}"]


@pytest.fixture(scope="module")
def demo():
    torch.manual_seed(0)
    model = unirepclip.create_model("UniRepLKNet-Demo")
    return model, unirepclip.get_tokenizer("UniRepLKNet-Demo")


# --- exact numbers: classifier = identity in 3-D, one axis per class --------------------------
FEATS = np.array([
    [1, 0, 0],       # label 0, correct
    [1, 1.01, 0],    # label 0, predicted 1 by a hair (logit gap 0.70)
    [0, 0, 1],       # label 2, correct
    [0, 1, 0],       # label 1, correct
    [1, 0, 0.98],    # label 2, predicted 0 (gap 1.43)
    [0, 0.9, 1],     # label 1, predicted 2 (gap 7.4: the most confident mistake)
    [0, 0, 1],       # label 2, correct
], dtype=np.float32)
LABELS = np.array([0, 0, 2, 1, 2, 1, 2])


def test_exact_numbers_on_constructed_classifier():
    r = zeroshot.evaluate(None, None, FEATS, LABELS, ["a", "b", "c"], classifier=np.eye(3),
                          ks=(1, 2, 5), n_mistakes=2)
    assert r["acc1"] == pytest.approx(4 / 7)
    assert r["acc2"] == 1.0 and r["acc5"] == 1.0  # every mistake is the runner-up; k clipped
    np.testing.assert_allclose(r["per_class_accuracy"], [1 / 2, 1 / 2, 2 / 3])
    assert r["mean_per_class_recall"] == pytest.approx(5 / 9)
    np.testing.assert_array_equal(r["confusion_matrix"], [[1, 1, 0], [0, 1, 1], [1, 0, 2]])
    np.testing.assert_array_equal(r["predictions"], [0, 1, 2, 1, 0, 2, 2])
    np.testing.assert_array_equal(r["most_confident_mistakes"], [5, 4])
    unit = FEATS / np.linalg.norm(FEATS, axis=1, keepdims=True)
    np.testing.assert_allclose(r["logits"], 100 * unit, rtol=1e-6)
    expected_conf = torch.softmax(torch.from_numpy(100 * unit), 1).max(1).values.numpy()
    np.testing.assert_allclose(r["confidence"], expected_conf, rtol=1e-5)
    all_mistakes = zeroshot.most_confident_mistakes(r["logits"], LABELS, n=10)
    np.testing.assert_array_equal(all_mistakes, [5, 4, 1])


def test_features_equal_to_class_embeddings_score_100_percent(demo):
    model, tok = demo
    clf = zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES)
    feats = clf.T.clone()  # image i "is" class i
    r = zeroshot.evaluate(model, tok, feats, torch.arange(5), CLASSNAMES, TEMPLATES)
    assert r["acc1"] == 1.0 and r["mean_per_class_recall"] == 1.0
    assert r["n_templates"] == 3 and len(r["most_confident_mistakes"]) == 0
    torch.testing.assert_close(r["classifier"], clf)


def _manual_classifier(model, tok, templates):
    cols = []
    with torch.no_grad():
        for c in CLASSNAMES:
            texts = [t.format(c) if isinstance(t, str) else t(c) for t in templates]
            e = model.encode_text(tok(texts), normalize=True).mean(0)
            cols.append(e / e.norm())
    return torch.stack(cols, dim=1)


def test_classifier_is_the_normalized_template_mean(demo):
    model, tok = demo
    clf = zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES, num_classes_per_batch=2)
    assert clf.shape == (64, 5)
    torch.testing.assert_close(clf, _manual_classifier(model, tok, TEMPLATES), atol=1e-5, rtol=0)
    single = zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES, template_index=1)
    torch.testing.assert_close(single, _manual_classifier(model, tok, TEMPLATES[1:2]),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(single, clf, atol=1e-3)


def test_loader_and_cached_features_agree(demo):
    model, tok = demo
    g = torch.Generator().manual_seed(0)
    images = torch.randn(7, 3, 64, 64, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    loader = DataLoader(TensorDataset(images, labels), batch_size=3)
    from_loader = zeroshot.evaluate(model, tok, loader, None, CLASSNAMES, TEMPLATES,
                                    template_index=0)
    with torch.no_grad():
        cached = model.encode_image(images, normalize=True).numpy()
    from_cache = zeroshot.evaluate(None, None, cached, labels, CLASSNAMES,
                                   classifier=from_loader["classifier"])
    np.testing.assert_allclose(from_loader["logits"], from_cache["logits"], atol=1e-4)
    assert from_loader["acc1"] == from_cache["acc1"]
    assert from_loader["n_templates"] == 1 and from_loader["n_samples"] == 7


@pytest.mark.parametrize("kwargs, match", [
    (dict(templates=["a photo"]), "exactly once"),
    (dict(templates=["a {0} of {0}"]), "exactly once"),
    (dict(templates=["a {} of {}"]), "not a format string"),
    (dict(templates=[3]), "templates\\[0\\] must be a str or a callable"),
    (dict(templates=[]), "templates is empty"),
    (dict(template_index=5), "template_index 5"),
    (dict(classnames=["a", ""]), "classnames\\[1\\]"),
])
def test_bad_prompts_are_named(demo, kwargs, match):
    model, tok = demo
    args = dict(classnames=["a", "b"], templates=["{}"])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        zeroshot.build_classifier(model, tok, args.pop("classnames"), args.pop("templates"), **args)


def test_bad_evaluate_inputs():
    with pytest.raises(ValueError, match="classnames has 2 entries"):
        zeroshot.evaluate(None, None, FEATS, LABELS, ["a", "b"], classifier=np.eye(3))
    with pytest.raises(ValueError, match="classifier has 4 rows"):
        zeroshot.evaluate(None, None, FEATS, LABELS, classifier=np.eye(4))
    with pytest.raises(ValueError, match="labels are required"):
        zeroshot.evaluate(None, None, FEATS, None, classifier=np.eye(3))
    with pytest.raises(ValueError, match="model, tokenizer, classnames and templates"):
        zeroshot.evaluate(None, None, FEATS, LABELS, ["a", "b", "c"])
