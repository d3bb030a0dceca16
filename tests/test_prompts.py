"""unirepclip.prompts: per-template and ensemble classifiers from one encoding pass equal
open_clip's classifier builder (through unirepclip.zeroshot), template by template."""
import numpy as np
import pytest
import torch

import unirepclip
from unirepclip.eval import prompts
from unirepclip.eval import zeroshot
from unirepclip.data import zeroshot_task
from unirepclip.features import extract_text_features

CLASSNAMES = ["circle", "square", "star"]
TEMPLATES = ["a photo of a {}.", lambda c: f"a drawing of a {c}", "{}"]


def test_prompt_texts_are_template_major():
    texts = prompts.prompt_texts(CLASSNAMES, TEMPLATES)
    assert texts[:3] == ["a photo of a circle.", "a photo of a square.", "a photo of a star."]
    assert texts[3] == "a drawing of a circle" and texts[-1] == "star" and len(texts) == 9
    with pytest.raises(ValueError, match="classnames"):
        prompts.prompt_texts([], TEMPLATES)
    with pytest.raises(ValueError, match="templates\\[0\\]"):
        prompts.prompt_texts(CLASSNAMES, ["no slot"])


def test_template_labels():
    assert prompts.template_label("a photo of a {}.") == "a photo of a {}."
    assert prompts.template_label(lambda c: f"a drawing of a {c}") == "a drawing of a {}"
    _, tmpl = zeroshot_task("shape")
    assert prompts.template_label(tmpl[0]) == "a picture of a red {}"


def test_classifiers_match_open_clip_builder_per_template_and_ensemble():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    tok = unirepclip.get_tokenizer("UniRepLKNet-Demo")
    texts = prompts.prompt_texts(CLASSNAMES, TEMPLATES)
    feats = extract_text_features(model, tok, texts, progress=False)
    ens, singles = prompts.classifiers_from_embeddings(feats.embeddings, 3, 3)
    assert ens.shape == (64, 3) and singles.shape == (3, 64, 3)
    ref = zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(ens, ref, atol=1e-5, rtol=1e-5)
    for t in range(3):
        one = zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES, template_index=t)
        torch.testing.assert_close(singles[t], one, atol=1e-5, rtol=1e-5)


def test_ensemble_of_hand_made_embeddings():
    # 2 templates x 2 classes in 2-D: class 0 prompts along x and y, class 1 along -x
    emb = np.array([[2.0, 0.0], [-1.0, 0.0],     # template 0: class 0, class 1
                    [0.0, 3.0], [-5.0, 0.0]])    # template 1
    ens, singles = prompts.classifiers_from_embeddings(emb, 2, 2)
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(ens.numpy(), [[s, -1.0], [s, 0.0]], atol=1e-7)
    np.testing.assert_allclose(singles[1].numpy(), [[0.0, -1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="2 templates x 3 classes"):
        prompts.classifiers_from_embeddings(emb, 2, 3)
    with pytest.raises(ValueError, match="all zeros"):
        prompts.classifiers_from_embeddings(np.zeros((4, 2)), 2, 2)


def test_build_classifiers_and_per_template_accuracy_agree_with_zeroshot_evaluate():
    model = unirepclip.create_model("UniRepLKNet-Demo")
    tok = unirepclip.get_tokenizer("UniRepLKNet-Demo")
    pc = prompts.build_classifiers(model, tok, CLASSNAMES, TEMPLATES, max_templates=2)
    assert pc.n_templates == 2 and pc.templates == ["a photo of a {}.", "a drawing of a {}"]
    torch.testing.assert_close(
        pc.ensemble, zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES[:2]),
        atol=1e-5, rtol=1e-5)
    g = np.random.default_rng(0)
    feats = g.normal(size=(50, 64)).astype(np.float32)
    labels = g.integers(0, 3, 50)
    accs = prompts.top1_accuracy(feats, labels, pc.singles, chunk=7)
    for t in range(2):
        r = zeroshot.evaluate(None, None, feats, labels, classifier=pc.singles[t])
        assert accs[t] == pytest.approx(r["acc1"])
    ens = prompts.top1_accuracy(feats, labels, pc.ensemble)
    assert ens.ndim == 0 and float(ens) == pytest.approx(
        zeroshot.evaluate(None, None, feats, labels, classifier=pc.ensemble)["acc1"])
    with pytest.raises(ValueError, match="max_templates"):
        prompts.build_classifiers(model, tok, CLASSNAMES, TEMPLATES, max_templates=-1)


def test_top1_accuracy_hand_made():
    clf = torch.tensor([[1.0, 0.0], [0.0, 1.0]])       # class c along axis c
    feats = np.array([[2.0, 1.0], [1.0, 3.0], [1.0, 1.0]])  # pred 0, 1, tie -> 0
    assert float(prompts.top1_accuracy(feats, [0, 1, 1], clf)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="do not fit"):
        prompts.top1_accuracy(feats, [0, 1], clf)
