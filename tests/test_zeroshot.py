"""Zero-shot classification: exact numbers on a constructed classifier, the plumbing with the
tiny demo model (random weights), per-template classifiers from one encoding pass against
open_clip's builder, and the summaries notebook 02 records against hand-computed answers."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import unirepclip
from unirepclip.data import sets, zeroshot_task
from unirepclip.eval import zeroshot
from unirepclip.features import extract_text_features

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


# --- modes: a half-frozen model comes back as it went in -------------------------------------
def _half_frozen(model):
    """Train mode everywhere, then a few submodules (and the text tower) in eval mode."""
    model.train()
    model.transformer.eval()
    for i, m in enumerate(model.visual.modules()):
        if i % 3 == 0:
            m.eval()
    return {name: m.training for name, m in model.named_modules()}


def test_classifier_and_image_encoding_restore_each_submodules_mode(demo):
    model, tok = demo
    before = _half_frozen(model)
    assert len(set(before.values())) == 2  # both modes are present
    zeroshot.build_classifier(model, tok, CLASSNAMES, TEMPLATES)
    assert {name: m.training for name, m in model.named_modules()} == before
    loader = DataLoader(TensorDataset(torch.randn(4, 3, 64, 64), torch.arange(4)), batch_size=2)
    zeroshot.encode_images(model, loader, progress=False)
    assert {name: m.training for name, m in model.named_modules()} == before
    zeroshot.build_classifiers(model, tok, CLASSNAMES, TEMPLATES)
    assert {name: m.training for name, m in model.named_modules()} == before
    model.eval()


def test_confidence_is_the_softmax_maximum_to_the_bit():
    g = np.random.default_rng(3)
    logits = (100 * g.normal(size=(40, 7))).astype(np.float32)
    z = logits - logits.max(axis=1, keepdims=True)  # the former local copy, kept as the reference
    p = np.exp(z)
    np.testing.assert_array_equal(zeroshot.confidence(logits),
                                  (p.max(axis=1) / p.sum(axis=1)).astype(np.float32))
    assert zeroshot.confidence(logits).dtype == np.float32


# --- prompts: every single-template classifier and the ensemble from one pass ----------------
P_CLASSNAMES = ["circle", "square", "star"]


def test_prompt_texts_are_template_major():
    texts = zeroshot.prompt_texts(P_CLASSNAMES, TEMPLATES)
    assert texts[:3] == ["a photo of a circle.", "a photo of a square.", "a photo of a star."]
    assert texts[3] == "a drawing of a circle" and texts[-1] == "star" and len(texts) == 9
    with pytest.raises(ValueError, match="classnames"):
        zeroshot.prompt_texts([], TEMPLATES)
    with pytest.raises(ValueError, match="templates\\[0\\]"):
        zeroshot.prompt_texts(P_CLASSNAMES, ["no slot"])


def test_template_labels():
    assert zeroshot.template_label("a photo of a {}.") == "a photo of a {}."
    assert zeroshot.template_label(lambda c: f"a drawing of a {c}") == "a drawing of a {}"
    _, tmpl = zeroshot_task("shape")
    assert zeroshot.template_label(tmpl[0]) == "a picture of a red {}"


def test_classifiers_match_open_clip_builder_per_template_and_ensemble(demo):
    model, tok = demo
    texts = zeroshot.prompt_texts(P_CLASSNAMES, TEMPLATES)
    feats = extract_text_features(model, tok, texts, progress=False)
    ens, singles = zeroshot.classifiers_from_embeddings(feats.embeddings, 3, 3)
    assert ens.shape == (64, 3) and singles.shape == (3, 64, 3)
    ref = zeroshot.build_classifier(model, tok, P_CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(ens, ref, atol=1e-5, rtol=1e-5)
    for t in range(3):
        one = zeroshot.build_classifier(model, tok, P_CLASSNAMES, TEMPLATES, template_index=t)
        torch.testing.assert_close(singles[t], one, atol=1e-5, rtol=1e-5)


def test_ensemble_of_hand_made_embeddings():
    # 2 templates x 2 classes in 2-D: class 0 prompts along x and y, class 1 along -x
    emb = np.array([[2.0, 0.0], [-1.0, 0.0],     # template 0: class 0, class 1
                    [0.0, 3.0], [-5.0, 0.0]])    # template 1
    ens, singles = zeroshot.classifiers_from_embeddings(emb, 2, 2)
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(ens.numpy(), [[s, -1.0], [s, 0.0]], atol=1e-7)
    np.testing.assert_allclose(singles[1].numpy(), [[0.0, -1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="2 templates x 3 classes"):
        zeroshot.classifiers_from_embeddings(emb, 2, 3)
    with pytest.raises(ValueError, match="all zeros"):
        zeroshot.classifiers_from_embeddings(np.zeros((4, 2)), 2, 2)


def test_build_classifiers_and_per_template_accuracy_agree_with_evaluate(demo):
    model, tok = demo
    pc = zeroshot.build_classifiers(model, tok, P_CLASSNAMES, TEMPLATES, max_templates=2)
    assert pc.n_templates == 2 and pc.templates == ["a photo of a {}.", "a drawing of a {}"]
    torch.testing.assert_close(
        pc.ensemble, zeroshot.build_classifier(model, tok, P_CLASSNAMES, TEMPLATES[:2]),
        atol=1e-5, rtol=1e-5)
    g = np.random.default_rng(0)
    feats = g.normal(size=(50, 64)).astype(np.float32)
    labels = g.integers(0, 3, 50)
    accs = zeroshot.top1_accuracy(feats, labels, pc.singles, chunk=7)
    for t in range(2):
        r = zeroshot.evaluate(None, None, feats, labels, classifier=pc.singles[t])
        assert accs[t] == pytest.approx(r["acc1"])
    ens = zeroshot.top1_accuracy(feats, labels, pc.ensemble)
    assert ens.ndim == 0 and float(ens) == pytest.approx(
        zeroshot.evaluate(None, None, feats, labels, classifier=pc.ensemble)["acc1"])
    with pytest.raises(ValueError, match="max_templates"):
        zeroshot.build_classifiers(model, tok, P_CLASSNAMES, TEMPLATES, max_templates=-1)


def test_top1_accuracy_hand_made():
    clf = torch.tensor([[1.0, 0.0], [0.0, 1.0]])       # class c along axis c
    feats = np.array([[2.0, 1.0], [1.0, 3.0], [1.0, 1.0]])  # pred 0, 1, tie -> 0
    assert float(zeroshot.top1_accuracy(feats, [0, 1, 1], clf)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="do not fit"):
        zeroshot.top1_accuracy(feats, [0, 1], clf)


# --- what notebook 02 records -----------------------------------------------------------------
def _tasks():
    # the features are e_0, e_1, e_2 (rows 0-2 of the dataset, shown in the order 2, 0, 1)
    shape = sets.ZeroShotTask("shape", ["a", "b", "c"], ["{}"], np.array([0, 1, 1]))
    colour = sets.ZeroShotTask("colour", ["x", "y"], ["{}"], np.array([1, 1, 0]))
    return shape, colour


def _prompt_classifiers(singles, templates, classnames):
    singles = torch.as_tensor(np.asarray(singles, dtype=np.float32))
    return zeroshot.PromptClassifiers(singles.mean(0), singles, templates, classnames)


def test_evaluate_tasks_summary_and_template_summaries_hand_computed():
    shape, colour = _tasks()
    tasks = {"shape": shape, "colour": colour}
    feats = np.eye(3, dtype=np.float32)[[2, 0, 1]]  # feature row k is image rows[k]
    rows = np.array([2, 0, 1])                      # true shape labels 1, 0, 1; colour 0, 1, 1
    eye = np.eye(3)
    # logits of feature e_d are row d of a classifier. shape: "s0" = identity predicts c, a, b
    # (right on the last two: 2/3), "s1" maps e_2 -> b, e_0 -> a, e_1 -> b (all right: 1),
    # "s2" predicts a always (1/3)
    s1 = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    s2 = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0]])
    shape_clf = _prompt_classifiers([eye, s1, s2], ["s0", "s1", "s2"], shape.classnames)
    # colour: "c0" predicts x for e_0 and e_2, y for e_1: x, x, y against the truth x, y, y (2/3)
    c0 = np.array([[1, 0], [0, 1], [1, 0]])
    c1 = np.array([[0, 1], [0, 1], [0, 1]])         # always y: 2/3
    colour_clf = _prompt_classifiers([c0, c1], ["c0", "c1"], colour.classnames)
    classifiers = {"shape": shape_clf, "colour": colour_clf}

    single = zeroshot.template_accuracies(feats, rows, tasks, classifiers)
    np.testing.assert_allclose(single["shape"], [2 / 3, 1.0, 1 / 3])
    np.testing.assert_allclose(single["colour"], [2 / 3, 2 / 3])

    # ensembles (the mean of the singles): shape on e_2: (0,0,1)+(0,1,0)+(1,0,0) ties -> a
    # (wrong); e_0: a (right); e_1: (0,1,0)+(0,1,0)+(1,0,0) -> b (right): 2/3; per class a 1/1,
    # b 1/2, c has no image
    reports = zeroshot.evaluate_tasks(feats, rows, tasks, classifiers, n_mistakes=4)
    assert reports["shape"]["acc1"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(reports["shape"]["predictions"], [0, 0, 1])  # "s0": 2, 0, 1
    np.testing.assert_allclose(reports["shape"]["per_class_accuracy"], [1.0, 0.5, np.nan])
    # colour ensemble: e_2 -> (.5,.5) tie -> x (truth 0: right), e_0 -> (.5,.5) -> x (truth 1:
    # wrong), e_1 -> y (right)
    assert reports["colour"]["acc1"] == pytest.approx(2 / 3)

    s = zeroshot.summary(reports, "shape", n_images=3)
    assert s == {
        "acc1": pytest.approx(2 / 3), "acc5": 1.0, "mean_per_class_recall": pytest.approx(0.75),
        "main_task": "shape", "n_images": 3,
        "tasks": {"shape": {"acc1": pytest.approx(2 / 3), "acc5": 1.0,
                            "mean_per_class_recall": pytest.approx(0.75),
                            "per_class_accuracy": [1.0, 0.5, None]},
                  "colour": {"acc1": pytest.approx(2 / 3), "acc5": 1.0,
                             "mean_per_class_recall": pytest.approx(0.75),
                             "per_class_accuracy": [1.0, 0.5]}}}
    assert zeroshot.summary(reports, "colour", 3)["tasks"] == s["tasks"]
    with pytest.raises(KeyError, match="main_task 'size'"):
        zeroshot.summary(reports, "size", 3)

    t = zeroshot.template_summaries(single, classifiers, reports)
    assert t["shape"] == {"ensemble_acc1": pytest.approx(2 / 3),
                          "single_acc1_mean": pytest.approx(2 / 3),
                          "single_acc1_best": 1.0, "single_acc1_worst": pytest.approx(1 / 3),
                          "best_template": "s1", "n_templates": 3}
    assert t["colour"]["best_template"] == "c0"  # the first of equals
    with pytest.raises(KeyError, match="no classifier"):
        zeroshot.evaluate_tasks(feats, rows, tasks, {"shape": shape_clf})


def test_summary_takes_the_main_tasks_figures_and_keeps_every_task():
    reports = {"shape": {"acc1": 0.9, "acc5": 1.0, "mean_per_class_recall": 0.8,
                         "per_class_accuracy": np.array([1.0, np.nan]), "logits": None},
               "colour": {"acc1": 0.5, "acc5": 0.7, "mean_per_class_recall": 0.4,
                          "per_class_accuracy": np.array([0.5, 0.25, 0.75])}}
    s = zeroshot.summary(reports, "colour", n_images=10)
    assert s == {"acc1": 0.5, "acc5": 0.7, "mean_per_class_recall": 0.4, "main_task": "colour",
                 "n_images": 10,
                 "tasks": {"shape": {"acc1": 0.9, "acc5": 1.0, "mean_per_class_recall": 0.8,
                                     "per_class_accuracy": [1.0, None]},
                           "colour": {"acc1": 0.5, "acc5": 0.7, "mean_per_class_recall": 0.4,
                                      "per_class_accuracy": [0.5, 0.25, 0.75]}}}


def test_template_summary_best_is_max_worst_is_min():
    s = zeroshot.template_summary([0.5, 0.9, 0.2, 0.6], ["t0", "t1", "t2", "t3"], 0.95)
    assert s == {"ensemble_acc1": 0.95, "single_acc1_mean": pytest.approx(0.55),
                 "single_acc1_best": 0.9, "single_acc1_worst": 0.2, "best_template": "t1",
                 "n_templates": 4}
    with pytest.raises(ValueError, match="3 templates"):
        zeroshot.template_summary([0.5, 0.9], ["t0", "t1", "t2"], 0.9)


class _SizeOracle(nn.Module):
    """Predicts from the input size and the image's position alone: image j at the k-th size of
    ``sizes`` gets shape (j + k) % 8 and colour (j + 2k) % 6, as the sum of two one-hot
    features (the preprocessing config is the demo model's, so the sweep's transforms apply)."""

    def __init__(self, sizes, preprocess_cfg):
        super().__init__()
        self.sizes = list(sizes)
        self.weight = nn.Parameter(torch.zeros(1))
        self.visual = nn.Module()
        self.visual.preprocess_cfg = dict(preprocess_cfg)
        self.seen = {}  # images encoded so far at each size

    def encode_image(self, x, normalize=False):
        size = x.shape[-1]
        k = self.sizes.index(size)
        j = self.seen.get(size, 0) + torch.arange(len(x))
        self.seen[size] = int(j[-1]) + 1
        return (nn.functional.one_hot((j + k) % 8, 16)
                + nn.functional.one_hot(8 + (j + 2 * k) % 6, 16)).float()


def test_resolution_sweep_against_label_counts():
    sizes = [48, 64, 80]
    n = 30
    demo_model = unirepclip.create_model("UniRepLKNet-Demo")
    oracle = _SizeOracle(sizes, demo_model.visual.preprocess_cfg)
    classifiers = {"shape": torch.eye(16)[:, :8], "colour": torch.eye(16)[:, 8:14]}
    sweep = zeroshot.resolution_sweep(oracle, classifiers, "synthetic", sizes, n_images=n, seed=2,
                                      batch_size=7, progress=False)
    assert oracle.seen == {48: n, 64: n, 80: n}
    assert list(sweep) == ["shape", "colour"] and list(sweep["shape"]) == ["48", "64", "80"]
    j = np.arange(n)
    for k, size in enumerate(sizes):
        truth = sets.classification_set("synthetic", n_images=n, image_size=size, seed=2)
        assert sweep["shape"][str(size)] == np.mean(truth.tasks["shape"].labels == (j + k) % 8)
        assert sweep["colour"][str(size)] == np.mean(truth.tasks["colour"].labels
                                                     == (j + 2 * k) % 6)
    assert len(set(sweep["shape"].values()) | set(sweep["colour"].values())) > 2  # not degenerate
    with pytest.raises(ValueError, match="repeat"):
        zeroshot.resolution_sweep(oracle, {}, "synthetic", [48, 48], n_images=4)


def test_prediction_captions():
    shape = sets.ZeroShotTask("shape", ["circle", "star"], ["{}"], np.array([0, 1, 1]))
    colour = sets.ZeroShotTask("colour", ["red", "blue"], ["{}"], np.array([0, 0, 1]))
    free = sets.ZeroShotTask("vocab", ["cat", "dog", "fox"], ["{}"], None)
    big = np.log([[0.97, 0.03], [0.2, 0.8]])  # for rows 2 and 0
    caps, ok = zeroshot.prediction_captions({"shape": shape, "colour": colour},
                                            {"shape": big, "colour": big[::-1]}, rows=[2, 0])
    # row 2: shape pred circle (true star: wrong); colour pred blue (true blue: right)
    assert caps[0] == "circle 97%\nblue 80%\ntrue: star, blue" and ok[0] is False
    # row 0: shape pred star (true circle): wrong; colour pred red (true red): right
    assert caps[1] == "star 80%\nred 97%\ntrue: circle, red" and ok[1] is False
    caps, ok = zeroshot.prediction_captions({"shape": shape}, {"shape": big[:1]}, rows=[0])
    assert caps == ["circle 97%"] and ok == [True]
    caps, ok = zeroshot.prediction_captions({"vocab": free}, {"vocab": np.log([[0.1, 0.6, 0.3]])},
                                            rows=[0], top_k_unlabelled=2)
    assert caps == ["dog 60%\nfox 30%"] and ok == [None]
    with pytest.raises(ValueError, match="expected \\(1, 3\\)"):
        zeroshot.prediction_captions({"vocab": free}, {"vocab": np.zeros((1, 2))}, rows=[0])
    with pytest.raises(KeyError, match="colour"):
        zeroshot.prediction_captions({"colour": colour}, {"shape": big}, rows=[0, 1])
