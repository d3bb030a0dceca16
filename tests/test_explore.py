"""The explorer's panel functions (unirepclip.analysis.explore) and its widgets' handling of input
(unirepclip.viz.explorer), on hand-made arrays with hand-computed answers and on the demo model
with known answers: a prompt naming a synthetic image's true class ranks it first, an image's own
caption finds it in the top k, an attribution map concentrates in the object's mask."""
import dataclasses
import html
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unirepclip.analysis import erf
from unirepclip.analysis import explore as ex
from unirepclip.data import SHAPES

N = 48


@pytest.fixture(scope="module")
def lm():
    from unirepclip.workbook.session import load
    torch.set_num_threads(1)
    return load("UniRepLKNet-Demo", "demo", device="cpu")


@pytest.fixture(scope="module")
def gallery():
    return ex.dataset_gallery("synthetic", n_images=N, image_size=64, seed=0)


@pytest.fixture(scope="module")
def emb(lm, gallery):
    return ex.embed_gallery(lm.model, gallery, lm.preprocess, progress=False)


# -- input boxes -----------------------------------------------------------------------------------

def test_parse_classnames_splits_trims_and_drops_repeats():
    assert ex.parse_classnames(" star,  red  heart ,,star\ncircle") == ["star", "red heart", "circle"]
    with pytest.raises(ValueError, match="class list is empty"):
        ex.parse_classnames(" , ,\n")


def test_parse_templates_needs_one_slot_per_line():
    assert ex.parse_templates("a photo of a {}.\n\n  a {} here ") == ["a photo of a {}.", "a {} here"]
    with pytest.raises(ValueError, match="template line 2 'no slot' needs one"):
        ex.parse_templates("a {}\nno slot")
    with pytest.raises(ValueError, match="line 1"):
        ex.parse_templates("{} and {}")
    with pytest.raises(ValueError, match="empty"):
        ex.parse_templates("\n  \n")
    with pytest.raises(ValueError, match="not one of"):
        ex.template_set("nope")
    assert len(ex.template_set("CLIP ImageNet (80)")) == 80


# -- zero-shot -----------------------------------------------------------------------------------

def test_zeroshot_table_is_the_softmax_of_100_cosines():
    emb = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    clf = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # (D, C): class c is axis c
    t = ex.zeroshot_table(emb, clf, ["x", "y"], labels=[0, 0])
    # row 2: logits 60 and 80 -> p(y) = 1 / (1 + e^-20)
    assert t["probabilities"][1, 1] == pytest.approx(1 / (1 + np.exp(-20.0)), rel=1e-6)
    assert t["probabilities"][0, 0] == pytest.approx(1 / (1 + np.exp(-100.0)))
    assert t["predicted"].tolist() == [0, 1] and t["accuracy"] == 0.5
    assert t["names"] == ["#0", "#1"]
    with pytest.raises(ValueError, match="3 class names"):
        ex.zeroshot_table(emb, clf, ["x", "y", "z"])
    with pytest.raises(ValueError, match="do not fit"):
        ex.zeroshot_table(emb, clf[:1], ["x", "y"])


def test_a_prompt_naming_the_true_class_ranks_it_first(lm, gallery, emb):
    templates = ex.template_set(next(iter(ex.TEMPLATE_SETS)))
    clf = ex.text_classifier(lm.model, lm.tokenizer, list(SHAPES), templates)
    t = ex.zeroshot_table(emb, clf, list(SHAPES), labels=gallery.labels)
    assert t["accuracy"] > 0.8  # chance is 1/8
    # one image, its colour and shape typed by hand: the true shape comes first
    cap = gallery.captions[2]  # 'a rendering of a red square'
    assert gallery.labels[2] == SHAPES.index("square")
    clf = ex.text_classifier(lm.model, lm.tokenizer, ["circle", "square", "star"],
                             ["a rendering of a red {}"])
    t = ex.zeroshot_table(emb[2:3], clf, ["circle", "square", "star"])
    assert "square" in cap and t["classnames"][t["predicted"][0]] == "square"


# -- search --------------------------------------------------------------------------------------

def test_rank_is_a_stable_descending_sort():
    s = np.array([0.1, 0.9, 0.5, 0.9, -1.0])
    hits = ex.rank(s, 3, names=list("abcde"))
    assert [h["index"] for h in hits] == [1, 3, 2]  # the tie keeps the lower index first
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[2]["name"] == "c"
    assert hits[0]["score"] == 0.9
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    assert [h["index"] for h in ex.rank(x, 200)] == list(np.argsort(-x))
    with pytest.raises(ValueError, match="k=0"):
        ex.rank(s, 0)


def test_search_by_hand_made_embeddings():
    images = np.eye(3, dtype=np.float32)
    q = np.array([0.2, 0.0, 0.98], dtype=np.float32)
    assert [h["index"] for h in ex.search_images(q, images, 2)] == [2, 0]
    assert len(ex.search_images(q, images, 10)) == 3  # k capped at the gallery's size
    texts = ["a", "b", "c"]
    assert ex.search_texts(images[1], images, texts, 1)[0]["name"] == "b"
    with pytest.raises(ValueError, match="2 texts for 3"):
        ex.search_texts(images[1], images, texts[:2])


def test_an_images_own_caption_finds_it_in_the_top_k(lm, gallery, emb):
    q, notes = ex.encode_queries(lm.model, lm.tokenizer, gallery.captions)
    assert notes == [""] * N
    k = 8
    for i in range(N):
        hits = ex.search_images(q[i], emb, k, gallery.names)
        assert i in [h["index"] for h in hits], (i, gallery.captions[i])
        assert hits[0]["score"] == pytest.approx(float(np.max(emb @ q[i])), abs=1e-6)
    # image -> text over the distinct captions: its own caption is among the top k too
    distinct = list(dict.fromkeys(gallery.captions))
    cap_emb, _ = ex.encode_queries(lm.model, lm.tokenizer, distinct)
    for i in range(0, N, 6):
        hits = ex.search_texts(emb[i], cap_emb, distinct, k)
        assert gallery.captions[i] in [h["name"] for h in hits], i


def test_a_long_query_is_truncated_with_a_note(lm):
    short = "a picture of a red star"
    long = " ".join(["red star"] * 30)
    emb, notes = ex.encode_queries(lm.model, lm.tokenizer, [short, long])
    assert notes[0] == "" and "62 tokens" in notes[1] and "first 32" in notes[1]
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="query is empty"):
        ex.encode_queries(lm.model, lm.tokenizer, ["   "])


# -- explain ---------------------------------------------------------------------------------------

def test_the_attribution_map_concentrates_in_the_mask(lm, gallery):
    i = 0
    ans = ex.explain(lm.model, lm.tokenizer, gallery.image(i), gallery.captions[i],
                     method="integrated_gradients", transform=lm.preprocess,
                     mask=gallery.masks[i], n_steps=32)
    assert ans["map"].shape == gallery.masks[i].shape == (64, 64)
    assert ans["chance"] == pytest.approx(gallery.masks[i].mean())
    assert ans["mass_in_mask"] > 3 * ans["chance"]
    # the map is where the model looks: outside the mask it is weaker per pixel than inside
    pos = np.clip(ans["map"], 0, None)
    assert pos[gallery.masks[i]].mean() > 5 * pos[~gallery.masks[i]].mean()
    assert ans["input"].shape == (64, 64, 3) and ans["input"].dtype == np.uint8
    cam = ex.explain(lm.model, lm.tokenizer, gallery.image(i), gallery.captions[i],
                     method="gradcam", transform=lm.preprocess, mask=gallery.masks[i], stage=2)
    assert cam["map"].shape == (64, 64) and cam["map"].min() >= 0  # ReLU'd
    with pytest.raises(ValueError, match="not one of"):
        ex.explain(lm.model, lm.tokenizer, gallery.image(i), "x", method="lime",
                   transform=lm.preprocess)
    with pytest.raises(TypeError, match="n_steps"):
        ex.explain(lm.model, lm.tokenizer, gallery.image(i), "x", method="gradcam",
                   transform=lm.preprocess, n_steps=3)
    odd = ex.explain(lm.model, lm.tokenizer, gallery.image(i), "x", method="saliency",
                     transform=lm.preprocess, mask=np.ones((8, 8), bool))
    assert "does not match" in odd["note"] and "mass_in_mask" not in odd


# -- embedding map -----------------------------------------------------------------------------

def test_pca_map_is_the_projection_on_the_top_two_principal_axes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    m = ex.embedding_map(x, "pca")
    xc = x - x.mean(0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    want = xc @ vt[:2].T
    for j in range(2):  # each axis up to its sign
        assert np.allclose(np.abs(m["coords"][:, j]), np.abs(want[:, j]), atol=1e-8)
    var = s ** 2 / (s ** 2).sum()
    assert m["explained_variance_ratio"] == pytest.approx(list(var[:2]))
    t = ex.embedding_map(x, "tsne", seed=0)
    assert t["coords"].shape == (40, 2) and np.isfinite(t["coords"]).all()
    assert t["perplexity"] == pytest.approx(13.0)  # capped below (N - 1) / 3
    with pytest.raises(ValueError, match="not one of"):
        ex.embedding_map(x, "umap")
    with pytest.raises(ValueError, match="at least 3"):
        ex.embedding_map(x[:2])


def test_nearest_neighbours_by_brute_force():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i in (0, 7, 29):
        sims = xn @ xn[i]
        want = [j for j in np.argsort(-sims) if j != i][:4]
        hits = ex.nearest_neighbours(x, i, 4)
        assert [h["index"] for h in hits] == want
        assert hits[0]["score"] == pytest.approx(sims[want[0]], rel=1e-5)
    with pytest.raises(ValueError, match="not in the gallery"):
        ex.nearest_neighbours(x, 30)
    assert ex.nearest_point([[0, 0], [1, 1], [5, 5]], 0.9, 1.2) == 1


def test_neighbours_on_the_demo_share_their_class(gallery, emb):
    same = [np.mean([gallery.labels[h["index"]] == gallery.labels[i]
                     for h in ex.nearest_neighbours(emb, i, 3)]) for i in range(N)]
    assert np.mean(same) > 0.6  # 8 shapes: chance about 1/8


# -- receptive field -------------------------------------------------------------------------------

def test_receptive_field_of_a_stage(lm):
    rf = ex.receptive_field(lm.model, ex.ErfQuery(stage=3, resolution=64, n_images=2))
    assert rf["erf"].shape == (64, 64) and rf["n_images"] == 2 and rf["n_nan"] == 0
    direct = erf.compute_erf(erf.stage_feature_fn(lm.model, 3),
                             erf.erf_images("synthetic", 2, 64), progress=False)
    assert np.allclose(rf["erf"], direct)
    ratios = [rf["area_ratios"][t]["area_ratio"] for t in ("t20", "t30", "t50", "t99")]
    assert ratios == sorted(ratios) and 0 < ratios[0] <= ratios[-1] <= 1
    early = ex.receptive_field(lm.model, ex.ErfQuery(stage=0, resolution=64, n_images=2))
    assert early["area_ratios"]["t99"]["area_ratio"] <= rf["area_ratios"]["t99"]["area_ratio"]
    with pytest.raises(ValueError, match="stage"):
        ex.receptive_field(lm.model, ex.ErfQuery(stage=7, resolution=64, n_images=1))


# -- galleries and files -------------------------------------------------------------------------

def _png(colour, size=(20, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_gallery_reads_images_and_lists_unreadable_ones(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(_png("red"))
    (tmp_path / "sub" / "b.png").write_bytes(_png("blue"))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    g = ex.folder_gallery(tmp_path)
    assert len(g) == 2 and [n.split(" ", 1)[1] for n in g.names] == ["a.png", "sub/b.png"]
    assert [p for p, _ in g.skipped] == [str(tmp_path / "broken.jpg")]
    assert g.image(1).getpixel((0, 0)) == (0, 0, 255)
    ident = g.dataset.identity
    (tmp_path / "a.png").write_bytes(_png("green", (21, 12)))
    assert g.dataset.identity != ident  # a changed file is a cache miss
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable image"):
        ex.folder_gallery(empty)
    with pytest.raises(ValueError, match="does not exist"):
        ex.folder_gallery(tmp_path / "missing")


def test_uploaded_file(lm):
    img = ex.uploaded_image(_png("red"), "x.png")
    assert img.size == (20, 12) and img.mode == "RGB"
    with pytest.raises(ValueError, match="'bad.png' is not a readable image"):
        ex.uploaded_image(b"\x89PNG garbage", "bad.png")
    with pytest.raises(ValueError, match="empty"):
        ex.uploaded_image(b"", "e.png")
    g = ex.single_image_gallery(img, "x.png")
    assert ex.embed_gallery(lm.model, g, lm.preprocess, progress=False).shape == (1, 64)


class _ImageOnly(torch.nn.Module):
    """A CLIP without its text tower (an image-only checkpoint)."""

    def __init__(self, clip):
        super().__init__()
        self.visual = clip.visual

    def encode_image(self, x, normalize=False):
        f = self.visual(x)
        return torch.nn.functional.normalize(f, dim=-1) if normalize else f


def test_text_tower_problem(lm):
    assert ex.text_tower_problem(lm.model, lm.tokenizer) is None
    assert "no text tower" in ex.text_tower_problem(_ImageOnly(lm.model), lm.tokenizer)
    assert "no tokenizer" in ex.text_tower_problem(lm.model, None)

    class TextStub(_ImageOnly):  # an encode_text left over, with no text weights behind it
        def encode_text(self, tokens, normalize=False):
            raise RuntimeError("no text weights")
    assert "no text tower" in ex.text_tower_problem(TextStub(lm.model), lm.tokenizer)


def test_default_queries_record_what_the_answers_say(lm, gallery, emb):
    options = ex.QueryOptions(query_index=3, top_k=5, explain_args={"n_steps": 8},
                              erf=ex.ErfQuery(n_images=1))
    out = ex.default_queries(lm.model, lm.tokenizer, gallery, emb, transform=lm.preprocess,
                             options=options)
    rec, ans = out["record"], out["answers"]
    q = ex.encode_queries(lm.model, lm.tokenizer, [gallery.captions[3]])[0][0]
    brute = list(np.argsort(-(emb @ q), kind="stable"))
    assert rec["search"]["query"] == gallery.captions[3]
    assert rec["search"]["own_image_rank"] == brute.index(3) + 1
    assert [h["index"] for h in ans["hits"]] == brute[:5]
    assert rec["zeroshot"]["acc1"] == pytest.approx(np.mean(ans["table"]["predicted"] ==
                                                            gallery.labels))
    assert rec["zeroshot"]["first_image_class"] == SHAPES[ans["table"]["predicted"][3]]
    assert rec["explain"]["mass_in_mask"] == ans["explain"]["mass_in_mask"]
    assert set(rec["erf"]["area_ratio"]) == {"t20", "t30", "t50", "t99"}
    nb = [gallery.labels[h["index"]] == gallery.labels[3] for h in ans["neighbours"]]
    assert rec["embedding_map"]["neighbours_same_class"] == pytest.approx(np.mean(nb))
    with pytest.raises(ValueError, match="query_index=99"):
        ex.default_queries(lm.model, lm.tokenizer, gallery, emb, transform=lm.preprocess,
                           options=ex.QueryOptions(query_index=99))


# -- the default query's options -----------------------------------------------------------------

def test_query_options_keep_the_defaults_and_refuse_bad_values_by_name():
    o = ex.QueryOptions()
    assert (o.query_index, o.top_k, o.explain_method, o.explain_args, o.map_method, o.seed) == \
        (0, 8, "integrated_gradients", {}, "pca", 0)
    assert o.erf == ex.ErfQuery(stage=3, resolution=64, n_images=8, dataset="synthetic",
                                data_dir="")
    # the notebook's parameters as they come: numpy integers, None for "no data folder"
    e = ex.ErfQuery(stage=np.int64(2), data_dir=None)
    assert e.stage == 2 and type(e.stage) is int and e.data_dir == ""
    assert ex.ErfQuery(data_dir=Path("/data/x")).data_dir == "/data/x"
    args = {"n_steps": 8}
    o = ex.QueryOptions(explain_args=args)
    args["n_steps"] = 99  # the options keep what they were given
    assert o.explain_args == {"n_steps": 8}
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.top_k = 3
    for bad, match in [({"top_k": 0}, r"QueryOptions\.top_k=0: expected an integer >= 1"),
                       ({"query_index": -1}, r"QueryOptions\.query_index=-1"),
                       ({"top_k": 2.5}, r"top_k=2\.5"), ({"seed": True}, "seed=True"),
                       ({"explain_method": "lime"}, "explain_method='lime'"),
                       ({"map_method": "umap"}, "map_method='umap'"),
                       ({"erf": {"stage": 1}}, r"QueryOptions\.erf="),
                       ({"explain_args": [1]}, r"QueryOptions\.explain_args")]:
        with pytest.raises(ValueError, match=match):
            ex.QueryOptions(**bad)
    for bad, match in [({"n_images": 0}, r"ErfQuery\.n_images=0"),
                       ({"stage": -1}, r"ErfQuery\.stage=-1"),
                       ({"resolution": 0}, r"ErfQuery\.resolution=0"),
                       ({"dataset": " "}, r"ErfQuery\.dataset")]:
        with pytest.raises(ValueError, match=match):
            ex.ErfQuery(**bad)


def test_the_live_app_reads_images_in_process_and_encodes_text_with_the_extraction_keywords(lm):
    from unirepclip.viz.explorer.state import ExplorerState

    st = ExplorerState(lm, {"num_workers": 4, "batch_size": 16, "cache": None,
                            "model_ident": "m"})
    assert st.extract_kw == {"batch_size": 16, "cache": None, "model_ident": "m",
                             "device": lm.device, "precision": lm.precision}
    assert st.text_kw == st.extract_kw
    st = ExplorerState(lm, {"precision": "bf16", "pin_memory": True})
    assert st.extract_kw["precision"] == "bf16" and st.extract_kw["pin_memory"] is True
    assert st.text_kw == {"precision": "bf16", "device": lm.device}


# -- the widgets -----------------------------------------------------------------------------------

def test_debouncer_calls_once_with_the_last_arguments():
    from unirepclip.viz.explorer import Debouncer

    calls, done = [], threading.Event()

    def fn(x):
        calls.append(x)
        done.set()
    d = Debouncer(fn, 0.15)
    for x in range(5):  # typing faster than the delay
        d(x)
        time.sleep(0.01)
    assert done.wait(2.0)
    time.sleep(0.3)
    assert calls == [4]
    now = Debouncer(fn, 0)
    now(9)
    assert calls == [4, 9]


@pytest.fixture(scope="module")
def app(lm, gallery, emb):
    pytest.importorskip("ipywidgets")
    from unirepclip.viz.explorer import Explorer
    return Explorer(lm, gallery, embeddings=emb, debounce_s=0,
                    options=ex.QueryOptions(top_k=4))


def test_typing_updates_the_answers_and_bad_input_gives_a_message(app, gallery, emb, lm):
    assert app.search.query.value == gallery.captions[0]  # the first answer to look at
    app.search.query.value = gallery.captions[7]
    q = ex.encode_queries(lm.model, lm.tokenizer, [gallery.captions[7]])[0][0]
    assert [h["index"] for h in app.last["search"]["hits"]] == \
        list(np.argsort(-(emb @ q), kind="stable")[:4])
    assert 'data-index="%d"' % app.last["search"]["hits"][0]["index"] in app.search.out.value
    app.zeroshot.classes.value = " , "
    assert "class list is empty" in app.zeroshot.msg.value
    assert "Traceback" not in app.zeroshot.msg.value
    app.zeroshot.template_choice.value = "typed below"
    app.zeroshot.classes.value = "star, heart"
    app.zeroshot.templates.value = "a star without a slot"
    assert "needs one {}" in app.zeroshot.msg.value
    app.zeroshot.templates.value = "a picture of a red {}"
    assert app.zeroshot.msg.value == "" and app.last["zeroshot"]["classnames"] == ["star", "heart"]
    app.image_to_text.captions.value = "\n \n"
    assert "caption list is empty" in app.image_to_text.msg.value
    app.source.source.value = "folder"
    app.source.folder.value = "/no/such/folder"
    app.source.load_button.click()
    assert "does not exist" in app.source.msg.value
    app.source.source.value = "uploaded file"
    app.source.load_button.click()
    assert "no file uploaded" in app.source.msg.value
    app.erf.stage.value = 3
    app.erf.n_images.value = 1
    app.erf.button.click()
    assert app.erf.msg.value == "" and app.erf.out.value[:4] == b"\x89PNG"
    app.map.method.value = "tsne"
    assert "press 'draw t-SNE'" in html.unescape(app.map.msg.value)
    app.map.button.click()
    assert app.last["embedding_map"]["map"]["method"] == "tsne" and app.map.msg.value == ""
    app.explain.index.value = 3
    assert app.explain.caption.value == gallery.captions[3]
    app.explain.ig_steps.value = 8
    app.explain.button.click()
    assert "mass in mask" in app.explain.msg.value and app.explain.out.value[:4] == b"\x89PNG"


def test_the_default_query_options_set_where_every_panel_starts(lm, gallery, emb):
    pytest.importorskip("ipywidgets")
    from unirepclip.viz.explorer import Explorer

    options = ex.QueryOptions(query_index=5, top_k=3, explain_args={"n_steps": 12}, seed=1,
                              erf=ex.ErfQuery(stage=1, resolution=32, n_images=2))
    app = Explorer(lm, gallery, embeddings=emb, debounce_s=0, options=options)
    assert app.search.query.value == app.explain.caption.value == gallery.captions[5]
    assert app.search.k.value == 3 and len(app.last["search"]["hits"]) == 3
    assert app.image_to_text.index.value == app.explain.index.value == app.map.point.value == 5
    assert len(app.last["image_to_text"]["hits"]) == 3
    assert [h["index"] for h in app.last["embedding_map"]["neighbours"]] == \
        [h["index"] for h in ex.nearest_neighbours(emb, 5, 3)]
    assert app.explain.ig_steps.value == 12
    assert (app.erf.stage.value, app.erf.resolution.value, app.erf.n_images.value) == (1, 32, 2)
    # the stage choices are the tower's own (the demo's config: four stages)
    assert list(app.erf.stage.options) == list(range(len(lm.model.visual.trunk.stages)))
    app.erf.button.click()
    want = ex.receptive_field(lm.model, options.erf, seed=1)
    assert app.last["erf"]["n_images"] == 2 and np.array_equal(app.last["erf"]["erf"], want["erf"])


def test_without_a_text_tower_the_text_panels_say_so_and_the_map_works(lm, gallery, emb):
    pytest.importorskip("ipywidgets")
    from unirepclip.viz.explorer import Explorer
    from unirepclip.workbook.session import Loaded

    image_only = Loaded(_ImageOnly(lm.model), lm.preprocess, lm.preprocess_train, lm.tokenizer,
                        lm.device, lm.precision, None, "image-only")
    app = Explorer(image_only, gallery, debounce_s=0)
    for msg in (app.zeroshot.msg, app.search.msg, app.image_to_text.msg):
        assert "no text tower" in msg.value, msg.value
    assert app.map.out.value[:4] == b"\x89PNG" and len(app.last["embedding_map"]["neighbours"]) == 8
    assert np.allclose(app.embeddings, emb, atol=1e-5)  # embedded here, the same vectors


# -- issue 27: the explorer's rough edges ------------------------------------------------------

def test_zeroshot_table_gives_the_cosines_beside_the_probabilities():
    emb = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    clf = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    t = ex.zeroshot_table(emb, clf, ["x", "y"])
    assert t["similarities"].tolist() == [[1.0, 0.0], [pytest.approx(0.6), pytest.approx(0.8)]]
    # cosines 0.2 apart: 100 x the gap saturates the probability, the cosines still tell
    assert t["probabilities"][1, 1] > 0.999


def test_the_contrastive_map_is_the_attribution_of_the_similarity_difference(lm, gallery):
    from unirepclip.analysis.attribution.metrics import pointing_game_counts

    i, a, b = 0, gallery.captions[0], "a photo of a cat"
    kw = dict(method="integrated_gradients", transform=lm.preprocess, mask=gallery.masks[i],
              n_steps=8)
    only_a = ex.explain(lm.model, lm.tokenizer, gallery.image(i), a, **kw)
    only_b = ex.explain(lm.model, lm.tokenizer, gallery.image(i), b, **kw)
    kw.pop("mask")
    both = {**only_a, **ex.explain_contrast(lm.model, lm.tokenizer, gallery.image(i), a,
                                            " a photo  of a cat ", **kw)}
    assert ex.score_explanation(both, gallery.masks[i], tolerance=15) is both
    assert both["contrast"] == b
    assert both["contrast_similarity"] == pytest.approx(only_b["similarity"], abs=1e-6)
    # integrated gradients is linear in the function it explains: IG(s_a - s_b) = IG(s_a) - IG(s_b)
    want = only_a["map"] - only_b["map"]
    assert np.allclose(both["contrast_map"], want, atol=1e-3 * np.abs(want).max())
    assert np.abs(both["contrast_map"]).max() > 0.05 * np.abs(only_a["map"]).max()  # not zero
    c = both["contrast_scores"]
    assert (c["n_maxima"], c["n_maxima_in_mask"]) == pointing_game_counts(
        both["contrast_map"], gallery.masks[i])
    assert (both["n_maxima"], both["n_maxima_in_mask"]) == pointing_game_counts(
        both["map"], gallery.masks[i])
    assert both["tolerance"] == 15 and both["pointing_game_tolerant"] >= both["pointing_game"]
    with pytest.raises(ValueError, match="nothing to contrast"):
        ex.explain_contrast(lm.model, lm.tokenizer, gallery.image(i), a, f"  {a} ", **kw)
    odd = ex.score_explanation(dict(both, note=""), np.ones((8, 8), bool))
    assert "does not match" in odd["note"]


def test_an_embedding_map_is_computed_once_per_features(monkeypatch):
    import sklearn.manifold

    fits = []

    class CountingTSNE(sklearn.manifold.TSNE):
        def fit_transform(self, x, y=None):
            fits.append(len(x))
            return super().fit_transform(x)
    monkeypatch.setattr(sklearn.manifold, "TSNE", CountingTSNE)
    x = np.random.default_rng(7).normal(size=(30, 5)).astype(np.float32)
    assert ex.cached_embedding_map(x, "tsne") is None
    first = ex.embedding_map(x, "tsne")
    again = ex.embedding_map(x.copy(), "tsne")  # the same features in another array: no fit
    assert fits == [30] and np.array_equal(first["coords"], again["coords"])
    again["coords"][:] = 0  # the answer is a copy: the memory keeps the map
    assert np.array_equal(ex.cached_embedding_map(x, "tsne")["coords"], first["coords"])
    ex.embedding_map(x, "tsne", seed=1)  # another setting, another map
    y = x.copy()
    y[0, 0] += 1  # other features
    ex.embedding_map(y, "tsne")
    assert fits == [30, 30, 30]
    assert ex.features_key(x) == ex.features_key(x.copy()) != ex.features_key(y)
    assert ex.features_key(x) != ex.features_key(x.astype(np.float64))


def test_an_erf_resolution_below_the_minimum_is_refused_with_the_minimum():
    assert ex.MIN_RESOLUTION == 8
    with pytest.raises(ValueError, match=r"ErfQuery\.resolution=7: expected an integer >= 8"):
        ex.ErfQuery(resolution=7)
    assert ex.ErfQuery(resolution=8).resolution == 8
    # the same floor as the images' (the query checks what erf_images would refuse)
    assert erf.erf_images("synthetic", 1, ex.MIN_RESOLUTION).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=">= 8"):
        erf.erf_images("synthetic", 1, ex.MIN_RESOLUTION - 1)


def test_a_square_holding_the_whole_image_says_so():
    from unirepclip.viz.explorer.figures import erf_figure
    from unirepclip.viz.explorer.receptive_field import ratio_table

    ring = np.zeros((64, 64))
    ring[32, 32] = 1e6  # normalized (log10(x + 1)): 6 at the centre, 0.041 on the border, so
    ring[0, :] = ring[:, 0] = 0.1  # the centre holds 53 % and only the whole image 99 %
    ratios = erf.area_ratios(ring)
    assert ratios["t99"] == {"side": 65, "area_ratio": 1.0} and ratios["t20"]["side"] == 1
    assert ex.covers_image(ratios["t99"]) and not ex.covers_image(ratios["t20"])
    table = ratio_table(ratios)
    assert "<td>t99</td><td>whole image</td>" in table and ">65<" not in table
    assert "<td>t20</td><td>1</td>" in table
    rf = {"normalized": erf.normalize_erf(ring), "area_ratios": ratios, "stage": 3,
          "resolution": 64, "n_images": 1}
    fig = erf_figure(rf)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["t20: side 1, area 0.000", "t99: whole image"]
    t99 = [p for p in fig.axes[0].patches if p.get_label().startswith("t99")][0]
    # the image's border, not a 65-pixel square reaching past it
    assert (t99.get_x(), t99.get_y(), t99.get_width(), t99.get_height()) == (-0.5, -0.5, 64, 64)


def test_the_explorer_figures_never_enter_pyplot(lm, gallery, emb, monkeypatch):
    """pyplot's figures are drawn and closed by the kernel's inline backend after every widget
    message, which JupyterLab's kernels handle on another thread than a button's callback: a
    figure on pyplot's list came out blank or cut off in the receptive-field tab."""
    pytest.importorskip("ipywidgets")
    import matplotlib._pylab_helpers as helpers
    import matplotlib.pyplot as plt
    from IPython.core.formatters import DisplayFormatter
    from unirepclip.viz.explorer import Explorer, figures

    registered = []
    monkeypatch.setattr(helpers.Gcf, "_set_new_active_manager",
                        classmethod(lambda cls, m: registered.append(m)))
    plt.close("all")
    app = Explorer(lm, gallery, embeddings=emb, debounce_s=0,
                   options=ex.QueryOptions(erf=ex.ErfQuery(stage=1, resolution=32, n_images=1),
                                           explain_args={"n_steps": 4}))
    app.erf.button.click()
    app.explain.button.click()
    app.map.point.value = 3
    table = {"probabilities": np.full((2, 3), 1 / 3), "names": ["a", "b"],
             "classnames": ["x", "y", "z"]}
    img = [np.zeros((8, 8, 3), np.uint8)] * 2
    hits = [{"rank": 1, "index": 0, "score": 0.5}]
    for fig in (figures.zeroshot_figure(table, img, n_show=2),
                figures.hits_figure(hits, img[:1], title="t"),
                figures.explain_figure(app.last["explain"]),
                figures.map_figure(app.last["embedding_map"]["map"]),
                figures.erf_figure(app.last["erf"])):
        assert figures.figure_png(fig)[:4] == b"\x89PNG"
        # and a notebook shows it without pyplot's display hook (as the report's cells do)
        assert "image/png" in DisplayFormatter().format(fig)[0]
    assert registered == [] and plt.get_fignums() == []
    assert app.erf.out.value[:4] == app.explain.out.value[:4] == app.map.out.value[:4] == \
        b"\x89PNG"


def _png_size(png: bytes):
    return Image.open(io.BytesIO(png)).size


def test_panel_figures_are_shown_at_the_size_and_density_they_are_rendered_for(lm, gallery, emb):
    pytest.importorskip("ipywidgets")
    from unirepclip.viz.explorer import Explorer
    from unirepclip.viz.explorer.figures import DENSITY, SCREEN_DPI

    app = Explorer(lm, gallery, embeddings=emb, debounce_s=0,
                   options=ex.QueryOptions(explain_args={"n_steps": 4}))
    app.explain.button.click()
    w_px, h_px = _png_size(app.explain.out.value)
    lay = app.explain.out.layout
    assert DENSITY == 2 and (lay.width, lay.height) == (f"{w_px / 2:g}px", f"{h_px / 2:g}px")
    # the figure's inches at the panels' CSS pixels per inch (2 x 2.2 in at 120: 528 CSS px,
    # 1056 device pixels; the old PNG was 385 px wide, stretched to the panel)
    assert w_px == round(2 * 2.2 * SCREEN_DPI * DENSITY)
    assert lay.object_fit == "contain" and lay.flex == "0 0 auto"
    w_map, _ = _png_size(app.map.out.value)
    assert app.map.out.layout.width == f"{w_map / 2:g}px"


def test_the_explain_readout_says_what_a_share_of_tied_maxima_means(app):
    from unirepclip.viz.explorer.explain import score_text

    ans = {"similarity": 0.25, "mass_in_mask": 0.5, "chance": 0.06, "pointing_game": 3 / 8,
           "n_maxima": 8, "n_maxima_in_mask": 3, "pointing_game_tolerant": 1.0,
           "tolerance": 15, "note": ""}
    text = score_text(ans)
    assert ("pointing game 38%: the maximum is tied at 8 pixels, 3 of them on the object (the "
            "score is that share); within 15 px of the object (Zhang et al.'s tolerance): "
            "100%") in text
    single = score_text({**ans, "pointing_game": 1.0, "n_maxima": 1, "n_maxima_in_mask": 1})
    assert "pointing game 100% (the map's maximum is on the object)" in single
    # live: a second caption gives the contrastive map beside the plain one
    app.explain.index.value = 2
    app.explain.ig_steps.value = 4
    app.explain.contrast.value = "a photo of a cat"
    app.explain.tolerance.value = 5
    app.explain.button.click()
    last = app.last["explain"]
    assert last["contrast"] == "a photo of a cat" and last["contrast_map"].shape == (64, 64)
    assert last["tolerance"] == 5 and "within 5 px" in html.unescape(app.explain.msg.value)
    assert "versus “a photo of a cat”" in html.unescape(app.explain.msg.value)
    assert "contrastive map: mass in mask" in app.explain.msg.value
    app.explain.contrast.value = app.explain.caption.value  # nothing to contrast: said, no map
    app.explain.button.click()
    assert "nothing to contrast" in app.explain.msg.value
    assert app.explain.out.value == b"" and "explain" not in app.last
    app.explain.contrast.value = ""


def test_zero_shot_uses_typed_templates_any_image_and_shows_cosines(app, lm, gallery, emb):
    zs = app.zeroshot
    zs.classes.value = "star, heart"
    zs.template_choice.value = next(iter(ex.TEMPLATE_SETS))
    zs.templates.value = "a small drawing of a {}"  # typing them is choosing them
    assert zs.template_choice.value == "typed below"
    table = app.last["zeroshot"]
    assert table["templates"] == ["a small drawing of a {}"]
    clf = ex.text_classifier(lm.model, lm.tokenizer, ["star", "heart"], ["a small drawing of a {}"])
    assert np.allclose(table["similarities"], emb @ clf, atol=1e-5)
    zs.first.value = 40  # any image, not only the first eight
    rows = [int(i) for i in __import__("re").findall(r'<tr data-index="(\d+)"', zs.out.value)]
    assert rows == list(range(40, 48))
    c = int(np.argmax(table["probabilities"][40]))
    assert f"cos {table['similarities'][40, c]:.3f}" in zs.out.value
    assert "softmax of 100 × the cosine similarity" in zs.out.value
    zs.templates.value = "no slot here"  # an error: the message alone, no stale table
    assert "needs one {}" in zs.msg.value and zs.out.value == "" and "zeroshot" not in app.last
    zs.templates.value = "a small drawing of a {}"
    assert zs.msg.value == "" and "<table>" in zs.out.value


def test_the_erf_panel_computes_the_resolution_typed_or_says_why_not(app):
    app.erf.stage.value = 3
    app.erf.n_images.value = 1
    app.erf.resolution.value = 10  # was raised to 16 behind the user's back
    app.erf.button.click()
    assert app.erf.msg.value == "" and app.last["erf"]["erf"].shape == (10, 10)
    app.erf.resolution.value = 64
    app.erf.button.click()
    assert "<td>t99</td><td>whole image</td>" in app.erf.table.value
    app.erf.resolution.value = 4
    app.erf.button.click()
    assert app.erf.resolution.value == 4  # kept as typed
    assert "resolution 4 px: the smallest the ERF takes is 8 px" in app.erf.msg.value
    assert app.erf.out.value == b"" and app.erf.table.value == "" and "erf" not in app.last
    app.erf.resolution.value = 4096
    app.erf.button.click()
    assert "at most 2048 px" in app.erf.msg.value


def test_the_embedding_map_reads_and_remembers_its_t_sne(app, emb, monkeypatch):
    import matplotlib as mpl
    from unirepclip.viz import style
    from unirepclip.viz.explorer.figures import map_figure

    emap = ex.embedding_map(emb, "tsne")
    fig = map_figure(emap, labels=app.gallery.labels, classnames=app.gallery.classnames)
    assert fig.axes[0].get_title() == "t-SNE of the image embeddings"
    assert map_figure(ex.embedding_map(emb, "pca")).axes[0].get_title().startswith("PCA of")
    style.use_style()
    leg = map_figure(emap, labels=app.gallery.labels, classnames=app.gallery.classnames).legends[0]
    # the style's legend size (7 pt), not 5 pt
    assert [t.get_fontsize() for t in leg.get_texts()] == [mpl.rcParams["legend.fontsize"]] * 8
    assert mpl.rcParams["legend.fontsize"] >= 7
    fig.canvas.draw()  # outside the axes: no class name over the points
    assert not fig.legends[0].get_window_extent().overlaps(fig.axes[0].get_window_extent())
    calls = []
    monkeypatch.setattr("sklearn.manifold.TSNE.fit_transform",
                        lambda self, x, y=None: calls.append(1) or np.zeros((len(x), 2)))
    app.map.method.value = "pca"
    app.map.method.value = "tsne"  # drawn before (above): shown from memory, no note
    assert calls == [] and app.map.msg.value == "" and app.map.out.value[:4] == b"\x89PNG"


def test_search_hits_show_their_captions_and_image_to_text_sits_beside_its_list(app, gallery):
    app.search.query.value = gallery.captions[9]
    for h in app.last["search"]["hits"]:
        assert f'class="unirepclip-caption" style="font-size:10px;line-height:1.25;overflow-' \
               f'wrap:anywhere">{html.escape(gallery.captions[h["index"]])}</div>' in \
               app.search.out.value
    app.image_to_text.captions.value = "a red star\na blue heart"
    out = app.image_to_text.out.value
    assert 'style="display:flex;' in out and "float" not in out
    app.image_to_text.captions.value = " \n"  # an error: the message alone
    assert app.image_to_text.out.value == "" and "image_to_text" not in app.last


def test_the_report_note_is_hidden_where_the_app_is_live(app):
    from unirepclip.viz.explorer.app import LIVE_NOTE

    first = app.widget.children[0]
    assert first.value == "<style>.unirepclip-live-note { display: none; }</style>"
    assert "make lab" in LIVE_NOTE


def test_a_notebook_run_by_hand_writes_no_report_beside_the_notebooks(tmp_path, monkeypatch,
                                                                      capsys):
    import ast
    import tempfile

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from unirepclip.workbook import params
    from unirepclip.workbook.session import setup

    repo = Path(__file__).resolve().parents[1]
    defaults = {ast.literal_eval(params.inspect_notebook(p).parameters["output_dir"].default)
                for p in params.discover_notebooks(repo / "notebooks")}
    assert len(defaults) == 1  # every notebook's parameters cell declares the same default
    default = defaults.pop()
    monkeypatch.chdir(tmp_path)  # the kernel's folder: notebooks/
    lm = setup(model_name="UniRepLKNet-Demo", checkpoint="demo", device="cpu",
               output_dir=default, results_path="")
    paths = lm.results.save_figure(FigureCanvasAgg(Figure()).figure, "06_explore_map",
                                   formats=("png",))
    assert list(tmp_path.iterdir()) == []  # nothing beside the notebooks
    assert paths[0].is_file() and Path(tempfile.gettempdir()) in paths[0].parents
    assert "this session's figures go to" in capsys.readouterr().out
    from unirepclip.workbook.results import NOTEBOOK_OUTPUT_DIR
    assert NOTEBOOK_OUTPUT_DIR == default
    other = setup(model_name="UniRepLKNet-Demo", checkpoint="demo", device="cpu",
                  output_dir=str(tmp_path / "given"), results_path="")
    assert other.results.output_dir == tmp_path / "given"  # a folder given is used as given


def test_one_kernel_name_everywhere_and_make_lab_starts_as_root():
    import json
    import os
    import subprocess

    from unirepclip.workbook.params import KERNEL_NAME
    from unirepclip.workbook.run.engine import kernel_display_name

    repo = Path(__file__).resolve().parents[1]
    display = kernel_display_name()
    assert (KERNEL_NAME, display) == ("unirepclip", "Python (unirepclip)")
    notebooks = sorted((repo / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 6
    for path in notebooks:  # JupyterLab opens each notebook on the project's kernel
        ks = json.loads(path.read_text())["metadata"]["kernelspec"]
        assert ks == {"name": KERNEL_NAME, "display_name": display, "language": "python"}, path
    readme = (repo / "README.md").read_text()
    assert f"*{display}*" in readme and ": .venv)" not in readme
    dry = subprocess.run(["make", "-n", "lab"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    assert "-m unirepclip kernel" in dry  # registered by the package: one name
    lab = next(line for line in dry.splitlines() if "jupyter lab" in line)
    # JupyterLab refuses root without --allow-root
    assert ("--allow-root" in lab.split()) == (os.geteuid() == 0), lab


def test_ensure_kernel_shows_the_kernel_by_the_one_display_name():
    import shutil
    import sys

    from jupyter_client.kernelspec import KernelSpecManager
    from unirepclip.workbook.run.engine import ensure_kernel, kernel_display_name

    name = "unirepclip-test-display"
    installed = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    try:
        assert ensure_kernel(name) == name
        assert KernelSpecManager().get_kernel_spec(name).display_name == f"Python ({name})" \
            == kernel_display_name(name)
        spec = installed / "kernel.json"  # an older registration, under the name it had
        text = spec.read_text().replace(f"Python ({name})", f"Python ({name}: .venv)")
        spec.write_text(text)
        ensure_kernel(name)
        assert KernelSpecManager().get_kernel_spec(name).display_name == f"Python ({name})"
    finally:
        shutil.rmtree(installed, ignore_errors=True)


def test_a_vit_answers_the_receptive_field_at_its_own_size_only():
    """A ViT's positional embedding is for one patch grid: the panel refuses another resolution
    in one line naming the tower; the default query measures at the ViT's size and says so; the
    answer names its depth a block (the ERF of its centre patch token)."""
    from open_clip.model import CLIP

    torch.manual_seed(0)
    vit = CLIP(16, dict(image_size=32, patch_size=8, width=32, layers=2, head_width=16),
               dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)).eval()
    assert ex.size_note(vit, 32) is None and ex.runnable_resolution(vit, 32) == 32
    note = ex.size_note(vit, 64)
    assert note.startswith("CLIP's open_clip VisionTransformer tower: not measured at 64x64 px")
    assert "runs at 32x32 px only" in note and ex.runnable_resolution(vit, 64) == 32
    with pytest.raises(ValueError, match=r"^ERF: CLIP's open_clip VisionTransformer tower"):
        ex.receptive_field(vit, ex.ErfQuery(stage=1, resolution=64, n_images=1))
    rf, said = ex.defaults._receptive(vit, ex.QueryOptions(
        erf=ex.ErfQuery(stage=1, resolution=64, n_images=2)))
    assert rf["unit"] == "block" and rf["resolution"] == 32 and rf["erf"].shape == (32, 32)
    assert said == f"{note}: the ERF is measured at 32 px"
    same, none = ex.defaults._receptive(vit, ex.QueryOptions(
        erf=ex.ErfQuery(stage=1, resolution=32, n_images=2)))
    np.testing.assert_array_equal(same["erf"], rf["erf"])   # the same images, the same size
    assert none == ""
