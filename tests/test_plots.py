"""unirepclip.plots: the figures show the numbers given (bar lengths, pixels, matrix cells),
with labelled axes and colour bars, and refuse mismatched inputs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unirepclip.viz import style as figures

from unirepclip.viz import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    figures.use_style()
    yield
    plt.close("all")


def _bar_widths(ax):
    return [p.get_width() for p in ax.patches]


def test_image_grid_pixels_titles_and_colours():
    imgs = [np.full((4, 4, 3), i * 20, np.uint8) for i in range(5)]
    fig = plots.image_grid(imgs, ["a", "b", "c", "d", "cost $5"],
                           correct=[True, False, None, True, True], ncols=3, title="grid")
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns, the last one empty
    np.testing.assert_array_equal(axes[4].images[0].get_array(), imgs[4])
    assert axes[0].get_title() == "a" and axes[4].get_title() == r"cost \$5"
    assert matplotlib.colors.to_hex(axes[0].title.get_color()) == plots.RIGHT.lower()
    assert matplotlib.colors.to_hex(axes[1].title.get_color()) == plots.WRONG.lower()
    assert not axes[5].images
    fig.canvas.draw()  # a "$" in data text must not break mathtext
    fig = plots.image_grid(imgs + imgs[:3], ["American Staffordshire Terrier 12%"] + ["b"] * 7,
                           ncols=8, width="one")
    assert "\n" in fig.axes[0].get_title()  # wrapped to its column
    with pytest.raises(ValueError, match="5 images but 2 titles"):
        plots.image_grid(imgs, ["a", "b"])


def test_per_class_accuracy_sorted_and_truncated():
    fig = plots.per_class_accuracy({"t": (["a", "b", "c"], [0.9, 0.1, np.nan])}, title="t")
    ax = fig.axes[0]
    assert _bar_widths(ax) == [0.1, 0.9]  # NaN class left out, worst first
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(1 / 3)  # chance
    assert ax.get_xlabel()
    acc = np.linspace(0, 1, 100)
    fig = plots.per_class_accuracy({"shape": (["x"] * 2, [0.2, 0.4]),
                                    "many": ([str(i) for i in range(100)], acc)},
                                   title="t", max_classes=10)
    assert len(fig.axes) == 2 and _bar_widths(fig.axes[0]) == [0.2, 0.4]
    assert _bar_widths(fig.axes[1]) == pytest.approx(list(acc[:5]) + list(acc[-5:]))
    assert "worst 5 and best 5 of 100" in fig.axes[1].get_title().replace("\n", " ")
    with pytest.raises(ValueError, match="task 'shape' has 2 classnames but 1 values"):
        plots.per_class_accuracy({"shape": (["a", "b"], [0.1])}, title="t")
    with pytest.raises(ValueError, match="non-empty mapping"):
        plots.per_class_accuracy({}, title="t")


def test_confusion_matrix_rows_normalized_with_labelled_colourbar():
    cm = np.array([[3, 1], [0, 2]])
    fig = plots.confusion_matrix({"t": (cm, ["x", "y"])}, title="cm")
    ax, cax = fig.axes
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.75, 0.25], [0, 1]])
    assert cax.get_ylabel() == "fraction of the true class"
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "0.25", "0.75", "1.00"]
    two = plots.confusion_matrix({"a": (cm, ["x", "y"]), "b": (np.eye(3), ["p", "q", "r"])},
                                 title="cm")
    assert len(two.axes) == 3 and [a.get_title() for a in two.axes[:2]] == ["a", "b"]
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        plots.confusion_matrix({"t": (cm, ["x", "y", "z"])}, title="cm")


def test_template_accuracies_and_ensemble_line():
    fig = plots.template_accuracies({"shape": (["t1", "t2", "t3"], [0.5, 0.2, 0.4], 0.6)},
                                    title="tmpl")
    ax = fig.axes[0]
    assert _bar_widths(ax) == [0.2, 0.4, 0.5]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["t2", "t3", "t1"]
    assert ax.lines[0].get_xdata()[0] == 0.6
    assert "60.0%" in ax.get_title()
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == [
        "ensemble of all templates", "one template alone"]
    many = ([str(i) for i in range(50)], np.linspace(0, 1, 50), 0.9)
    fig = plots.template_accuracies({"a": (["t1", "t2"], [0.1, 0.2], 0.3), "b": many},
                                    title="tmpl", max_templates=10)
    assert len(fig.axes) == 2 and len(fig.axes[1].patches) == 10
    assert "worst 5 and best 5 of 50" in fig.axes[1].get_title().replace("\n", " ")
    with pytest.raises(ValueError, match="task 'a' has 2 labels but 1 values"):
        plots.template_accuracies({"a": (["t1", "t2"], [0.1], 0.3)}, title="t")


def test_long_titles_wrap_to_the_figure_width():
    long = "UniRepLKNet-Demo: zero-shot accuracy per class, task shape, 64 px, " * 2
    fig = plots.per_class_accuracy({"t": (["a", "b"], [0.5, 0.7])}, title=long)
    lines = fig.get_suptitle().split("\n")
    assert len(lines) >= 3 and " ".join(lines).split() == long.split()
    cm = plots.confusion_matrix({"t": (np.eye(2), ["a long class name", "b"])}, title=long)
    for f in (fig, cm):
        f.canvas.draw()
        box = f._suptitle.get_window_extent(f.canvas.get_renderer())
        assert box.x0 >= 0 and box.x1 <= f.bbox.width  # nothing clipped at the edges


def test_resolution_sweep_lines():
    fig = plots.resolution_sweep([48, 64, 96], {"shape": [0.5, 0.8, 0.7], "colour": [1, 1, 0.9]},
                                 native=64, title="sweep")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.5, 0.8, 0.7])
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [48, 64, 96])
    assert ax.lines[2].get_xdata()[0] == 64
    with pytest.raises(ValueError, match="3 sizes but 2 values for 'shape'"):
        plots.resolution_sweep([1, 2, 3], {"shape": [0.1, 0.2]}, title="s")


def test_resolution_sweep_takes_values_keyed_by_size():
    # keyed in another order than the sizes: each point must land at its own size
    fig = plots.resolution_sweep([48, 64, 96], {"shape": {"96": 0.7, "48": 0.5, "64": 0.8}},
                                 title="sweep")
    line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [48, 64, 96])
    np.testing.assert_array_equal(line.get_ydata(), [0.5, 0.8, 0.7])
    with pytest.raises(KeyError, match=r"'shape' has no value for size\(s\) \[96\]"):
        plots.resolution_sweep([48, 96], {"shape": {"48": 0.5}}, title="s")


def test_retrieval_recall_and_throughput_bars():
    res = {"image_to_text": {"r1": 0.1, "r5": 0.5, "r10": 0.7},
           "text_to_image": {"r1": 0.2, "r5": 0.6, "r10": 0.8}}
    ax = plots.retrieval_recall(res, title="r").axes[0]
    assert [p.get_height() for p in ax.patches] == [0.1, 0.5, 0.7, 0.2, 0.6, 0.8]
    with pytest.raises(KeyError, match="text_to_image"):
        plots.retrieval_recall({"image_to_text": res["image_to_text"]}, title="r")
    ax = plots.throughput({"training": 100.0, "inference": 150.0}, title="speed").axes[0]
    assert _bar_widths(ax) == [100.0, 150.0]
    assert [t.get_text() for t in ax.texts] == ["100/s (1.00x)", "150/s (1.50x)"]


def _titles_out_of_room(fig):
    """Titles (the suptitle, the axes' titles) that cross the figure's edge or overlap another
    title, measured on a fresh drawing: what a saved file shows clipped or run together."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [t for t in fig.texts + [ax.title for ax in fig.axes] if t.get_text()]
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts]
    out = [t for t, b in boxes if b.x0 < -0.5 or b.x1 > fig.bbox.width + 0.5]
    out += [(t, u) for i, (t, a) in enumerate(boxes) for u, b in boxes[i + 1:] if a.overlaps(b)]
    return out


def test_zero_shot_figures_keep_long_titles_inside_the_saved_figure(tmp_path):
    """A panel's title is centred on its axes, which long class names push to the right: a long
    task name ran past the figure's right edge in the saved file. Every word stays."""
    names = ["circle", "a class name long enough to push the axes", "star"]
    task = "colour of the object, a task whose name is long enough to run past the edge"
    title = "UniRepLKNet-Demo: zero-shot accuracy per class (64 px) on imagenet-sketch"
    figs = {
        "per_class": plots.per_class_accuracy(
            {"shape": (names, [0.5, 1.0, 0.25]), task: (names, [0.5, 1.0, 0.25])}, title=title),
        "confusion": plots.confusion_matrix(
            {"shape": (np.eye(3), names), task: (np.eye(3), names)}, title=title),
        "templates": plots.template_accuracies(
            {"shape": (["a photo of a {} in a template long enough"] * 3, [0.5] * 3, 0.6),
             task: (["a photo of a {} in a template long enough"] * 3, [0.5] * 3, 0.6)},
            title=title),
    }
    assert all(_titles_out_of_room(f) for f in figs.values())  # as drawn, before saving
    for name, fig in figs.items():
        words = [(t.get_text().split()) for t in fig.texts + [ax.title for ax in fig.axes]]
        figures.save(fig, name, tmp_path, formats=("png",))
        assert _titles_out_of_room(fig) == [], name
        assert [t.get_text().split() for t in fig.texts + [ax.title for ax in fig.axes]] == \
            words, name


def test_the_explorer_zero_shot_figure_shows_whole_captions_inside_the_figure(tmp_path):
    """Notebook 06's zero-shot figure cut each image's caption at 22 characters ("#0 this image
    contain…") and its last one ran off the figure's right edge."""
    from unirepclip.viz.explorer import zeroshot_figure

    names = ["#0 this image contains a red crescent", "#1 a rendering of a large purple star"] * 3
    table = {"probabilities": np.full((6, 8), 1 / 8), "names": names,
             "classnames": [f"class {i}" for i in range(8)]}
    fig = zeroshot_figure(table, [np.zeros((8, 8, 3), np.uint8)] * 6, title="zero-shot")
    figures.save(fig, "06_zeroshot", tmp_path, formats=("png",))
    assert [ax.get_title().split() for ax in fig.axes[:6]] == [n.split() for n in names]
    assert _titles_out_of_room(fig) == []
