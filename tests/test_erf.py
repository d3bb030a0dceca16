"""ERF measurement and analysis against analytic cases (unirepclip.analysis.erf), notebook 03's
steps, and the figures and tables of unirepclip.viz.erf."""
import copy

import matplotlib
import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import unirepclip  # noqa: F401  (registers the towers)
from helpers import randomize_reparam_state
from unirepclip.analysis.erf import (PUBLISHED_AREA_RATIOS, area_ratios, compute_erf, normalize_erf,
                                     stage_feature_fn)
from unirepclip.utils import max_relative_difference
from unirepclip.viz.erf import (area_ratio_table, plot_erf, plot_erf_grid, plot_square_shares,
                                stage_table, stage_tables)

matplotlib.use("Agg")


def ones_depthwise(k: int, channels: int = 3) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def positive_images(n: int = 3, size: int = 64) -> torch.Tensor:
    # Positive pixels keep every pre-ReLU centre activation positive, so the ReLU passes the
    # gradient of every channel and the analytic map is exact.
    return torch.rand(n, 3, size, size) + 0.1


def box_profile(k: int, n: int) -> np.ndarray:
    """n-fold discrete convolution of a length-k box: the 1-D ERF of n stacked all-ones kernels."""
    p = np.ones(1)
    for _ in range(n):
        p = np.convolve(p, np.ones(k))
    return p


def test_single_all_ones_kernel_has_a_box_erf_of_side_k():
    k, size = 7, 64
    erf, used, nan = compute_erf(ones_depthwise(k), positive_images(), progress=False,
                                 return_counts=True)
    assert (used, nan) == (3, 0)
    expected = np.zeros((size, size))
    c = size // 2
    expected[c - k // 2:c + k // 2 + 1, c - k // 2:c + k // 2 + 1] = 3.0  # one per colour channel
    np.testing.assert_array_equal(erf, expected)


def test_box_area_ratios_are_exact():
    erf = compute_erf(ones_depthwise(7), positive_images(2), progress=False)
    r = area_ratios(erf)
    # 3x3 holds 9/49 < 20%; 5x5 holds 25/49 > 50%; only 7x7 holds 99%.
    assert {t: v["side"] for t, v in r.items()} == {"t20": 5, "t30": 5, "t50": 5, "t99": 7}
    assert r["t50"]["area_ratio"] == pytest.approx(25 / 4096, abs=0)
    assert r["t99"]["area_ratio"] == pytest.approx(49 / 4096, abs=0)


@pytest.mark.parametrize("k,n", [(3, 4), (7, 3), (5, 2)])
def test_stacked_all_ones_kernels_give_the_n_fold_box_convolution(k, n):
    size = 64
    stack = nn.Sequential(*[ones_depthwise(k) for _ in range(n)])
    erf = compute_erf(stack, positive_images(2), progress=False)
    p = box_profile(k, n)
    expected = np.zeros((size, size))
    half, c = len(p) // 2, size // 2
    expected[c - half:c + half + 1, c - half:c + half + 1] = 3.0 * np.outer(p, p)
    np.testing.assert_allclose(erf, expected, rtol=1e-6, atol=0)
    # Theory: the profile widens to n(k-1)+1 and its variance grows linearly with n.
    assert len(p) == n * (k - 1) + 1
    x = np.arange(len(p)) - half
    assert (p * x ** 2).sum() / p.sum() == pytest.approx(n * (k * k - 1) / 12)


def test_area_ratios_hand_computed():
    # 8x8 map, centre (4, 4) = 999 -> log10 = 3 -> 1 after /max; its 8 neighbours 9 -> 1/3.
    m = np.zeros((8, 8))
    m[3:6, 3:6] = 9.0
    m[4, 4] = 999.0
    r = area_ratios(m)
    # total 1 + 8/3 = 11/3: the centre alone holds 3/11 = 27%.
    assert r["t20"] == {"side": 1, "area_ratio": 1 / 64}
    assert r["t30"] == {"side": 3, "area_ratio": 9 / 64}
    assert r["t99"] == {"side": 3, "area_ratio": 9 / 64}


def test_area_ratios_uniform_map_clips_at_the_border():
    r = area_ratios(np.ones((8, 8)))
    # squares centred at (4, 4): 1, 9, 25, 49 pixels, then clipped to the whole map (64)
    assert r["t20"] == {"side": 5, "area_ratio": 25 / 64}
    assert r["t50"] == {"side": 7, "area_ratio": 49 / 64}
    assert r["t99"] == {"side": 9, "area_ratio": 1.0}


def test_area_ratios_rejects_bad_input():
    with pytest.raises(ValueError, match="zero everywhere"):
        area_ratios(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="thresholds"):
        area_ratios(np.ones((4, 4)), thresholds=(1.5,))
    with pytest.raises(ValueError, match="2-D"):
        area_ratios(np.ones(4))


def test_nan_images_are_skipped_and_counted():
    conv = ones_depthwise(3)

    def feature_fn(x):
        # 0 * sqrt(x) is 0 forward but its gradient at a zero pixel is 0 * inf = NaN.
        return conv(x) + 0 * torch.sqrt(x)

    x = positive_images(5)
    x[1, 0, 10, 10] = 0.0
    x[3, 2, 50, 20] = 0.0
    erf, used, nan = compute_erf(feature_fn, x, batch_size=2, progress=False, return_counts=True)
    assert (used, nan) == (3, 2)
    np.testing.assert_array_equal(erf, compute_erf(conv, x[[0, 2, 4]], progress=False))
    with pytest.raises(ValueError, match="NaN"):
        compute_erf(feature_fn, x[[1]], progress=False)


@pytest.fixture(scope="module")
def demo_trunks():
    torch.manual_seed(0)
    train = timm.create_model("unireplknet_demo", num_classes=0).eval()
    randomize_reparam_state(train, seed=1, depthwise_std=0.1)
    deploy = copy.deepcopy(train).reparameterize()
    assert deploy.deploy and not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    return train, deploy


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_training_and_inference_forms_have_the_same_erf(demo_trunks, stage):
    train, deploy = demo_trunks
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    a = compute_erf(stage_feature_fn(train, stage), x, progress=False)
    b = compute_erf(stage_feature_fn(deploy, stage), x, progress=False)
    assert a.max() > 0
    assert np.abs(a - b).max() / np.abs(a).max() < 1e-5


def test_batching_and_train_mode_do_not_change_the_erf(demo_trunks):
    train, _ = demo_trunks
    fn = stage_feature_fn(train, 1)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    one = compute_erf(fn, x, batch_size=1, progress=False)
    # the mean over images is the mean of the single-image ERFs
    first = compute_erf(fn, x[:1], progress=False)
    rest = compute_erf(fn, x[1:], batch_size=1, progress=False)
    np.testing.assert_allclose(one, (first + 2 * rest) / 3, rtol=1e-10)
    train.train()  # BatchNorm in training mode would mix images; compute_erf must prevent it
    try:
        three = compute_erf(fn, x, batch_size=3, progress=False)
        assert train.training and train.stages[1][0].norm.training  # modes restored
    finally:
        train.eval()
    np.testing.assert_allclose(three, one, rtol=1e-5, atol=1e-6 * one.max())
    # a DataLoader-style iterable of (images, labels) gives the same answer
    loader = [(x[:1], torch.zeros(1)), (x[1:], torch.zeros(2))]
    np.testing.assert_allclose(compute_erf(fn, loader, batch_size=3, progress=False), one,
                               rtol=1e-5, atol=1e-6 * one.max())


def test_bf16_autocast_close_to_fp32(demo_trunks):
    train, _ = demo_trunks
    fn = stage_feature_fn(train, 0)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    a = compute_erf(fn, x, progress=False)
    b = compute_erf(fn, x, precision="bf16", progress=False)
    assert not np.array_equal(a, b)  # autocast really ran in bf16
    assert np.abs(a - b).sum() / np.abs(a).sum() < 0.1
    with pytest.raises(ValueError, match="precision"):
        compute_erf(fn, x, precision="int8", progress=False)


def test_stage_feature_fn_shapes_and_errors(demo_trunks):
    train, _ = demo_trunks
    x = torch.randn(1, 3, 64, 64)
    sizes = [stage_feature_fn(train, s)(x).shape[-1] for s in range(4)]
    assert sizes == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="stage"):
        stage_feature_fn(train, 4)
    with pytest.raises(TypeError, match="trunk"):
        stage_feature_fn(nn.Linear(2, 2), 0)


def test_large_kernels_widen_the_erf_at_init():
    # Same depth and width, only the kernel sizes differ: at initialization (architecture alone)
    # the large-kernel tower's stage-1 ERF must be wider than its 3x3 twin's.
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    sides = {}
    for name in ("unireplknet_demo", "unireplknet_demo_small_kernel"):
        torch.manual_seed(0)
        trunk = timm.create_model(name, num_classes=0, layer_scale_init_value=1.0).eval()
        erf = compute_erf(stage_feature_fn(trunk, 1), x, progress=False)
        sides[name] = area_ratios(erf)["t99"]["side"]
    assert sides["unireplknet_demo"] > sides["unireplknet_demo_small_kernel"]


def test_plot_erf_labels_axes_and_colour_bar():
    import matplotlib.pyplot as plt

    erf = compute_erf(ones_depthwise(5), positive_images(1, 32), progress=False)
    fig, ax = plt.subplots()
    im = plot_erf(ax, erf, title="box k=5")
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "box k=5"
    assert len(fig.axes) == 2  # the colour bar
    np.testing.assert_allclose(im.get_array(), normalize_erf(erf))
    plt.close(fig)


# --- the notebook's building blocks ------------------------------------------------------------

from unirepclip.analysis.erf import (control_records, erf_image_sets, erf_images,  # noqa: E402
                                     erf_records, erf_records_by_resolution, erfs_by_resolution,
                                     inference_form, initialized_trunk, reparam_check,
                                     square_shares, stage_erfs, tower_comparison)


def test_square_shares_hand_computed():
    m = np.zeros((5, 5))
    m[2, 2] = 99.0                  # log10(100) = 2 -> 1 after /max
    m[1, 1] = m[3, 3] = 9.0         # log10(10) = 1 -> 1/2
    m[0, 0] = 9.0                   # in the outermost ring only
    sides, shares, areas = square_shares(m)
    np.testing.assert_array_equal(sides, [1, 3, 5])
    np.testing.assert_array_equal(areas, [1, 9, 25])
    # total 1 + 3 * 0.5 = 2.5: the centre holds 0.4, the 3x3 square 2/2.5
    np.testing.assert_allclose(shares, [0.4, 0.8, 1.0])


def test_square_shares_clip_on_an_even_map():
    # 4 x 4: centre (2, 2); the 3x3 square fits, the 5x5 square is clipped to 4 x 4
    sides, shares, areas = square_shares(np.ones((4, 4)))
    np.testing.assert_array_equal(sides, [1, 3, 5])
    np.testing.assert_array_equal(areas, [1, 9, 16])
    np.testing.assert_allclose(shares, [1 / 16, 9 / 16, 1.0])


def test_erf_records_of_a_box():
    erfs = {"stage0": compute_erf(ones_depthwise(7), positive_images(1), progress=False)}
    rec = erf_records(erfs, "box")
    assert rec["erf.box.stage0.side.t20"] == 5 and rec["erf.box.stage0.side.t99"] == 7
    assert rec["erf.box.stage0.area_ratio.t50"] == 25 / 4096
    assert rec["erf.box.stage0.area_ratio.t99"] == 49 / 4096
    assert len(rec) == 8
    assert set(erf_records(erfs, "demo.at_init")) == {k.replace("box", "demo.at_init")
                                                      for k in rec}
    with pytest.raises(ValueError, match="model_key"):
        erf_records(erfs, "")


def test_stage_erfs_is_compute_erf_per_stage(demo_trunks):
    train, _ = demo_trunks
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    got = stage_erfs(train, x, stages=[0, 2], progress=False)
    assert list(got) == ["stage0", "stage2"]
    np.testing.assert_array_equal(got["stage2"],
                                  compute_erf(stage_feature_fn(train, 2), x, progress=False))
    with pytest.raises(ValueError, match="stages"):
        stage_erfs(train, x, stages=[])


def test_erf_images_synthetic_matches_the_world_and_the_val_normalization():
    from unirepclip.data import SyntheticWorld
    from unirepclip.utils import normalize_images

    x = erf_images("synthetic", 3, 32, seed=1)
    expected = normalize_images(SyntheticWorld(image_size=32, seed=1).render("test", 3).images)
    assert x.shape == (3, 3, 32, 32)
    torch.testing.assert_close(x, expected)
    with pytest.raises(ValueError, match="dataset"):
        erf_images("imagenet", 3, 32)
    with pytest.raises(ValueError, match="data_dir"):
        erf_images("imagefolder", 3, 32)
    with pytest.raises(ValueError, match="resolution must be an int"):
        erf_images("synthetic", 3, "[64, 128]")  # a parameter passed as text


def test_erf_images_from_a_folder_skips_unreadable_files(tmp_path):
    from PIL import Image

    for cls, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (40, 30), colour).save(tmp_path / cls / "x.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    x = erf_images("imagefolder", 5, 16, data_dir=str(tmp_path), seed=0)
    assert x.shape == (2, 3, 16, 16)  # only two readable images exist
    # a plain red / blue image, normalized with the OpenAI statistics
    import open_clip
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD)
    red = ((torch.tensor([1.0, 0.0, 0.0]) - mean) / std).view(3, 1, 1).expand(3, 16, 16)
    assert any(torch.allclose(img, red, atol=1e-5) for img in x)


def test_initialized_trunk_is_seeded_and_sets_the_layer_scale():
    state = torch.random.get_rng_state()
    a = initialized_trunk("UniRepLKNet-Demo", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched
    b = initialized_trunk("UniRepLKNet-Demo", seed=3)
    c = initialized_trunk("UniRepLKNet-Demo", seed=4)
    w = "stages.1.0.dwconv.lk_origin.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])
    assert not a.training
    gammas = [m.gamma for m in a.modules() if isinstance(m, unirepclip.models.unireplknet.UniRepLKNetBlock)]
    assert gammas and all(torch.all(g == 1e-6) for g in gammas)
    on = initialized_trunk("UniRepLKNet-Demo-SmallKernel", seed=3, layer_scale=1.0)
    kernels = {m.kernel_size for m in on.modules()
               if isinstance(m, unirepclip.models.unireplknet.UniRepLKNetBlock)}
    assert kernels == {3}
    assert all(torch.all(m.gamma == 1.0) for m in on.modules()
               if isinstance(m, unirepclip.models.unireplknet.UniRepLKNetBlock))


def test_inference_form_is_a_reparameterized_copy(demo_trunks):
    train, _ = demo_trunks
    before = {k: v.clone() for k, v in train.state_dict().items()}
    dep = inference_form(train)
    assert dep is not train and not any(isinstance(m, nn.BatchNorm2d) for m in dep.modules())
    assert all(torch.equal(v, before[k]) for k, v in train.state_dict().items())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    a = compute_erf(stage_feature_fn(train, 1), x, progress=False)
    b = compute_erf(stage_feature_fn(dep, 1), x, progress=False)
    assert max_relative_difference(a, b) < 1e-5


def test_area_ratio_table_rows():
    box = compute_erf(ones_depthwise(7), positive_images(1), progress=False)
    table = area_ratio_table({"box k=7": box, "given": {"t20": 0.5, "t30": 0.6, "t50": 0.7,
                                                        "t99": 0.8}})
    lines = table.splitlines()
    assert lines[0] == "| network | 20 % | 30 % | 50 % | 99 % |"
    # 5x5 of 64x64 = 0.61 %, 7x7 = 1.20 %
    assert lines[2] == "| box k=7 | 0.6 (5 px) | 0.6 (5 px) | 0.6 (5 px) | 1.2 (7 px) |"
    assert lines[3] == "| given | 50.0 | 60.0 | 70.0 | 80.0 |"
    assert lines[-1] == "| RepLKNet-31 (published, 1024 px) | 15.0 | 23.4 | 41.4 | 98.6 |"
    assert len(lines) == 2 + 2 + len(PUBLISHED_AREA_RATIOS)
    assert len(area_ratio_table({"box": box}, published=False).splitlines()) == 3
    with pytest.raises(ValueError, match="lacks"):
        area_ratio_table({"bad": {"t20": 0.1}})


def test_plot_erf_grid_and_square_shares():
    import matplotlib.pyplot as plt

    a = compute_erf(ones_depthwise(5), positive_images(1, 32), progress=False)
    b = compute_erf(ones_depthwise(9), positive_images(1, 32), progress=False)
    fig = plot_erf_grid({"k5": {"stage0": a, "stage1": b}, "k9": {"stage0": b}})
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    assert [ax.get_title() for ax in panels[:2]] == ["stage0", "stage1"]  # columns: stages
    assert panels[0].get_ylabel() == "k5\ny (input px)"                     # rows: networks
    assert panels[2].get_ylabel() == "k9\ny (input px)"
    assert not panels[3].axison  # k9 has no stage1
    assert any(ax.get_ylabel() == "log10(ERF + 1) / max" for ax in fig.axes)  # the colour bar
    plt.close(fig)
    fig, ax = plt.subplots()
    plot_square_shares(ax, {"k5": a, "k9": b})
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("k5", "k9")]
    x, y = lines[0].get_data()
    _, shares, areas = square_shares(a)
    np.testing.assert_allclose(y, shares)
    np.testing.assert_allclose(x, areas / 1024)
    assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_stage_table_cells():
    box5 = compute_erf(ones_depthwise(5), positive_images(1, 32), progress=False)
    box9 = compute_erf(ones_depthwise(9), positive_images(1, 32), progress=False)
    lines = stage_table({"a": {"stage0": box5, "stage1": box9}, "b": {"stage1": box5}},
                        0.99).splitlines()
    assert lines[0] == "| network (t = 99 %) | stage0 | stage1 |"
    # 5x5 of 32x32 = 2.44 %, 9x9 = 7.91 %
    assert lines[2] == "| a | 2.4 (5 px) | 7.9 (9 px) |"
    assert lines[3] == "| b | - | 2.4 (5 px) |"


def test_erf_records_by_resolution():
    a = {"stage0": compute_erf(ones_depthwise(7), positive_images(1), progress=False)}
    b = {"stage0": compute_erf(ones_depthwise(3), positive_images(1, 32), progress=False)}
    rec = erf_records_by_resolution({64: a, 32: b}, "m")
    assert rec["erf.m.stage0.side.t99"] == 7  # the first resolution gives the main keys
    assert rec["erf.m.resolutions.32.stage0.side.t99"] == 3
    assert rec["erf.m.resolutions.32.stage0.area_ratio.t99"] == 9 / 1024
    assert not any(".resolutions.64." in k for k in rec)  # no copy of the main keys
    assert len(rec) == 2 * 8


def test_comparison_towers_labels_keys_and_kernels():
    from unirepclip.analysis.erf import comparison_towers
    from unirepclip.models.unireplknet import UniRepLKNetBlock

    def kernels(t):
        return {m.kernel_size for m in t.modules() if isinstance(m, UniRepLKNetBlock)}

    def scales(t):
        return {float(m.gamma.detach()[0]) for m in t.modules() if isinstance(m, UniRepLKNetBlock)}

    towers = comparison_towers("UniRepLKNet-Demo", "demo",
                               control_model_name="UniRepLKNet-Demo-SmallKernel",
                               control_key="demo_small_kernel", seed=1)
    assert {label: key for label, (key, _) in towers.items()} == {
        "demo at init": "demo.at_init",
        "demo at init, layer scale 1": "demo.at_init_layer_scale_1",
        "demo_small_kernel at init": "demo_small_kernel",
        "demo_small_kernel at init, layer scale 1": "demo_small_kernel.at_init_layer_scale_1"}
    t = {label: tower for label, (_, tower) in towers.items()}
    assert kernels(t["demo at init"]) == {3, 13} and kernels(t["demo_small_kernel at init"]) == {3}
    assert max(abs(s - 1e-6) for s in scales(t["demo at init"])) < 1e-12
    assert scales(t["demo_small_kernel at init, layer scale 1"]) == {1.0}
    trained = nn.Identity()
    with_control = comparison_towers("UniRepLKNet-Demo", "demo",
                                     control_model_name="UniRepLKNet-Demo-SmallKernel",
                                     control_key="ctl", control=trained)
    assert with_control["ctl (trained)"] == ("ctl", trained)
    # a trained control keeps its own initialization beside it, under its own key
    assert with_control["ctl at init"][0] == "ctl.at_init"
    assert kernels(with_control["ctl at init"][1]) == {3}
    assert list(comparison_towers("UniRepLKNet-Demo", "demo")) == ["demo at init",
                                                                   "demo at init, layer scale 1"]
    with pytest.raises(ValueError, match="control_key"):
        comparison_towers("UniRepLKNet-Demo", "demo", control_model_name="UniRepLKNet-Demo")


def test_stage_tables_one_block_per_resolution_and_threshold():
    box5 = compute_erf(ones_depthwise(5), positive_images(1, 32), progress=False)
    box9 = compute_erf(ones_depthwise(9), positive_images(1, 64), progress=False)
    rows = {32: {"a": {"stage0": box5}}, 64: {"a": {"stage0": box9}}}
    blocks = stage_tables(rows, (0.2, 0.99)).split("\n\n")
    assert blocks[0::2] == ["**32 px**", "**32 px**", "**64 px**", "**64 px**"]
    assert blocks[1::2] == [stage_table(rows[32], 0.2), stage_table(rows[32], 0.99),
                            stage_table(rows[64], 0.2), stage_table(rows[64], 0.99)]


# --- notebook 03's steps ------------------------------------------------------------------------

def test_reparam_check_reports_the_worst_stage(demo_trunks):
    train, _ = demo_trunks
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    # A stand-in "inference form" that differs from the trained tower in its last stage only:
    # stages 0-2 agree exactly, stage 3 does not, so the maximum and the minimum differ.
    other = copy.deepcopy(train)
    with torch.no_grad():
        other.stages[3][0].pwconv1[1].weight.mul_(1.5)
    check = reparam_check(train, x, [0, 1, 2, 3], inference=other, progress=False)
    truth = {f"stage{s}": max_relative_difference(
        compute_erf(stage_feature_fn(train, s), x, progress=False),
        compute_erf(stage_feature_fn(other, s), x, progress=False)) for s in range(4)}
    assert check["per_stage"] == truth
    assert truth["stage0"] == truth["stage1"] == truth["stage2"] == 0.0 < truth["stage3"]
    assert check["max_rel_diff"] == truth["stage3"]
    # the real inference form (the default): every stage agrees to round-off
    real = reparam_check(train, x, [1, 3], progress=False)
    assert list(real["per_stage"]) == ["stage1", "stage3"]
    assert real["max_rel_diff"] == max(real["per_stage"].values()) < 1e-5


def test_erf_image_sets_and_erfs_by_resolution(demo_trunks):
    train, _ = demo_trunks
    images = erf_image_sets("synthetic", 2, [32, 64], seed=1)
    assert list(images) == [32, 64]
    for r, x in images.items():
        torch.testing.assert_close(x, erf_images("synthetic", 2, r, seed=1), rtol=0, atol=0)
    erfs = erfs_by_resolution(train, images, [0, 2], progress=False)
    assert list(erfs) == [32, 64] and erfs[64]["stage2"].shape == (64, 64)
    np.testing.assert_array_equal(erfs[32]["stage2"],
                                  compute_erf(stage_feature_fn(train, 2), images[32],
                                              progress=False))
    with pytest.raises(ValueError, match="resolutions"):
        erf_image_sets("synthetic", 2, [])
    with pytest.raises(ValueError, match="resolutions"):
        erf_image_sets("synthetic", 2, "64")
    with pytest.raises(ValueError, match="resolution"):
        erfs_by_resolution(train, {}, [0])


def test_tower_comparison_rows_and_records(demo_trunks):
    train, deploy = demo_trunks
    images = {32: torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(9)),
              64: torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(10))}
    given = {"measured": {32: {"stage0": np.ones((32, 32))}, 64: {"stage0": np.ones((64, 64))}}}
    out = tower_comparison({"train": ("m.train", train), "deploy": ("m.deploy", deploy)},
                           images, [0], leading=given, progress=False)
    assert list(out["rows"]) == [32, 64]
    assert list(out["rows"][64]) == ["measured", "train", "deploy"]
    assert out["rows"][64]["measured"]["stage0"] is given["measured"][64]["stage0"]
    truth = {name: {r: {"stage0": compute_erf(stage_feature_fn(t, 0), x, progress=False)}
                    for r, x in images.items()} for name, t in (("train", train), ("deploy", deploy))}
    for r in images:
        for name in ("train", "deploy"):
            np.testing.assert_array_equal(out["rows"][r][name]["stage0"], truth[name][r]["stage0"])
    expected = {**erf_records_by_resolution(truth["train"], "m.train"),
                **erf_records_by_resolution(truth["deploy"], "m.deploy")}
    assert out["records"] == expected  # the leading rows are not recorded again
    assert "erf.m.train.resolutions.64.stage0.side.t99" in out["records"]


def test_control_records():
    assert control_records("UniRepLKNet-Demo-SmallKernel", "ctl", trained=True) == {
        "erf.ctl.state": "trained"}
    assert control_records("UniRepLKNet-Demo-SmallKernel", "ctl", trained=False) == {
        "erf.ctl.state": "init"}
    assert control_records("", "ctl", trained=False) == {}
    with pytest.raises(ValueError, match="control_key"):
        control_records("UniRepLKNet-Demo-SmallKernel", "", trained=True)


# --- notebook 03's plan for a tower that is not UniRepLKNet ------------------------------------

def _tiny_vit(layers=8):
    from open_clip.model import CLIP

    torch.manual_seed(0)
    return CLIP(16, dict(image_size=32, patch_size=8, width=32, layers=layers, head_width=16),
                dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)).eval()


def test_erf_plan_of_a_vit_its_size_its_blocks_and_the_skipped_checks_said():
    from unirepclip.analysis.erf import erf_plan

    plan = erf_plan(_tiny_vit(8), "tiny-vit", [64, 128], [0, 1, 2, 3])
    assert plan.resolutions == [32] and plan.unit == "block"
    assert plan.depths == [1, 3, 5, 7]   # the last block of each quarter of 8
    assert plan.names == ["block1", "block3", "block5", "block7"] and plan.name(7) == "block7"
    size, blocks = plan.notes
    assert "runs at 32x32 px only" in size and "not at [64, 128] px" in size
    assert "8 blocks and no stages" in blocks and "(2, 2) of its 4x4 patch grid at 32 px" in blocks
    assert "no re-parameterized form" in plan.reparam_skipped
    assert "UniRepLKNet configs" in plan.comparison_skipped
    assert all("\n" not in n for n in [*plan.notes, plan.reparam_skipped,
                                       plan.comparison_skipped])
    assert erf_plan(_tiny_vit(8), "tiny-vit", [32], [3]).notes[0].startswith("tiny-vit (open_clip")
    assert erf_plan(_tiny_vit(3), "v", [32], [0, 1, 2, 3]).depths == [0, 0, 1, 2]
    with pytest.raises(ValueError, match=r"erf_plan: stages \[4\] must be in 0..3 .*8 blocks"):
        erf_plan(_tiny_vit(8), "tiny-vit", [32], [4])


def test_erf_plan_of_unireplknet_is_what_was_asked():
    from unirepclip.analysis.erf import erf_plan

    trunk = timm.create_model("unireplknet_demo", num_classes=0).eval()
    plan = erf_plan(trunk, "UniRepLKNet-Demo", [64, 128], [0, 1, 2, 3])
    assert plan.resolutions == [64, 128] and plan.depths == [0, 1, 2, 3] and plan.notes == []
    assert plan.names == ["stage0", "stage1", "stage2", "stage3"] and plan.unit == "stage"
    assert plan.reparam_skipped is None and plan.comparison_skipped is None


def test_vit_erfs_are_named_by_block_and_span_the_input():
    model = _tiny_vit(4)
    x = torch.rand(2, 3, 32, 32)
    erfs = stage_erfs(model, x, [1, 3], batch_size=2, progress=False)
    assert list(erfs) == ["block1", "block3"]
    assert all(m.shape == (32, 32) and np.isfinite(m).all() for m in erfs.values())
    # attention mixes every patch: the centre token's ERF reaches every patch of the 4x4 grid
    per_patch = erfs["block1"].reshape(4, 8, 4, 8).sum(axis=(1, 3))
    assert (per_patch > 0).all()


def test_peer_erfs_measure_a_vit_at_its_quarter_blocks_beside_the_stages():
    from unirepclip.analysis.erf import peer_erfs

    model = _tiny_vit(8)  # 8 blocks: stage s -> the last block of quarter s: 1, 3, 5, 7
    asked = []

    def images(res):
        asked.append(res)
        return torch.rand(2, 3, res, res, generator=torch.Generator().manual_seed(res))

    out = peer_erfs(model, "tiny-vit", "vit", [0, 1, 2, 3], 64, images, batch_size=2,
                    progress=False)
    assert asked == [32]  # asked for 64 px, measured at the one size the ViT runs at
    assert out["resolution"] == 32 and out["records"]["erf.vit.resolution"] == 32
    stands = {"stage0": "block1", "stage1": "block3", "stage2": "block5", "stage3": "block7"}
    assert out["records"]["erf.vit.stands_for"] == stands
    direct = stage_erfs(model, images(32), [1, 3, 5, 7], batch_size=2, progress=False)
    for stage, block in stands.items():
        assert np.array_equal(out["as_stages"][stage], direct[block])
        assert out["records"][f"erf.vit.{block}.area_ratio.t20"] == \
            area_ratios(direct[block])["t20"]["area_ratio"]
    with pytest.raises(ValueError, match="peer_key is empty"):
        peer_erfs(model, "tiny-vit", "", [0], 32, images)


def _square_erf(side, n=33):
    m = np.zeros((n, n))
    lo = n // 2 - side // 2
    m[lo:lo + side, lo:lo + side] = 100.0
    return m


def test_side_by_side_summary_orders_by_area_and_turns_with_the_numbers():
    from unirepclip.analysis.erf import side_by_side_summary

    wide, narrow = _square_erf(21), _square_erf(5)
    rw, rn = (area_ratios(m, (0.2,))["t20"]["area_ratio"] for m in (wide, narrow))
    assert rw > 4 * rn  # the wide square's t20 area is several times the narrow one's
    text = side_by_side_summary({"A": {"stage3": wide}, "B": {"stage3": narrow}}, "stage3")
    assert text.index("A:") < text.index("B:")
    assert f"The widest is A, {rw / rn:.1f} times the area of the narrowest, B." in text
    swapped = side_by_side_summary({"A": {"stage3": narrow}, "B": {"stage3": wide}}, "stage3")
    assert "The widest is B," in swapped and "narrowest, A." in swapped
    same = side_by_side_summary({"A": {"stage3": wide}, "B": {"stage3": wide.copy()}}, "stage3")
    assert "All are about as wide" in same and "widest" not in same
    three = side_by_side_summary({"A": {"stage3": wide}, "B": {"stage3": wide.copy()},
                                  "C": {"stage3": narrow}}, "stage3")
    assert "(B about as wide)" in three and "narrowest, C." in three
    with pytest.raises(ValueError, match="fewer than two rows measured at stage2"):
        side_by_side_summary({"A": {"stage3": wide}, "B": {"stage2": narrow}}, "stage2")
