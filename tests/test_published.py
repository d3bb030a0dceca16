"""unirepclip.data.published: open_clip's published tables shipped inside the package, checked
against the project's source copies (../shared/data/open_clip, whose README gives provenance and
sha256) and against themselves: each row's 38 task cells average to its published column within the
file's own rounding, GFLOPs become GMACs once, and a task value of 0 shows as failed."""
import csv
import hashlib
import re
from pathlib import Path

import pytest

from unirepclip.data import published as pub

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "open_clip"
CARD = next((REPO.parent / "shared" / "seeds").glob("*.txt"), None)


@pytest.fixture(scope="module")
def source_dir() -> Path:
    if not SOURCE.is_dir():
        pytest.fail(f"open_clip's source tables not found at {SOURCE}")
    return SOURCE


def _raw(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [r for r in rows[1:] if r]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the copies are the published files --------------------------------------------------------
@pytest.mark.parametrize("name", ["openclip_results.csv", "model_profile.csv", "LICENSE"])
def test_shipped_copy_is_byte_identical_to_the_source(source_dir, name):
    assert _sha(pub.HERE / name) == _sha(source_dir / name)


def test_recorded_sha256_is_the_sources_as_its_readme_states(source_dir):
    readme = (source_dir.parent / "README.md").read_text()
    for name, digest in pub.SHA256.items():
        assert digest == _sha(source_dir / name)
        assert re.search(rf"{re.escape(name)}\s+{digest}", readme), name
        assert digest in (pub.HERE / "README.md").read_text(), name  # the provenance beside it


def test_the_package_data_declares_the_shipped_files():
    text = (REPO / "pyproject.toml").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith('"unirepclip.data.published"'))
    for pattern in re.findall(r'"([^"]+)"', line.partition("=")[2]):
        assert list(pub.HERE.glob(pattern)), pattern
    shipped = {p.name for p in pub.HERE.iterdir() if p.suffix != ".py" and p.is_file()}
    declared = {p.name for pattern in re.findall(r'"([^"]+)"', line.partition("=")[2])
                for p in pub.HERE.glob(pattern)}
    assert shipped == declared


# --- the rows, re-selected from the source and checked against themselves ---------------------
def test_peers_rows_equal_the_source_rows_re_selected(source_dir):
    header, rows = _raw(source_dir / "openclip_results.csv")
    tasks = header[5:]
    assert len(tasks) == 38 and header[4].startswith("Average perf. on 38")
    for peer in pub.peers():
        raw = [r for r in rows if (r[0], r[1]) == (peer.result.name, peer.result.pretrained)]
        assert len(raw) == 1, peer.label
        r = raw[0]
        assert peer.result.params_m == float(r[2]) and peer.result.gflops == float(r[3])
        assert peer.result.average == float(r[4])
        assert peer.result.tasks == tuple(zip(tasks, map(float, r[5:])))
        assert peer.result.imagenet_top1 == float(r[header.index("ImageNet 1k")])
    p_header, p_rows = _raw(source_dir / "model_profile.csv")
    for peer in pub.peers():
        r = dict(zip(p_header, next(r for r in p_rows if r[0] == peer.result.name)))
        p = peer.profile
        assert (p.image_params_m, p.text_params_m, p.params_m) == (
            float(r["image_mparams"]), float(r["text_mparams"]), float(r["mparams"]))
        assert (p.image_gflops, p.text_gflops, p.gflops) == (
            float(r["image_gflops"]), float(r["text_gflops"]), float(r["gflops"]))
        assert p.image_size == int(r["image_size"])


def test_the_peers_are_the_ones_the_issue_names(source_dir):
    """ConvNeXt-XXL (soup), ConvNeXt-L-D-320 (soup), ViT-H-14, both ViT-g-14 and ViT-bigG-14."""
    names = [(p.result.name, p.result.pretrained) for p in pub.peers()]
    assert len(set(names)) == 6
    assert {n for n, _ in names} == {"convnext_xxlarge", "convnext_large_d_320", "ViT-H-14",
                                     "ViT-g-14", "ViT-bigG-14"}
    assert sum(n == "ViT-g-14" for n, _ in names) == 2


def test_every_row_averages_its_38_cells_to_the_published_average_within_rounding(source_dir):
    """Each cell and the average are rounded to the file's decimals: the mean of the rounded cells
    is within half a unit of their last place of the true mean, which is within half a unit of
    the average's last place of the published average."""
    header, rows = _raw(source_dir / "openclip_results.csv")
    table = pub.read_results()
    assert len(table) == len(rows)
    for r in rows:
        cells_places = max(len(c.partition(".")[2]) for c in r[5:])
        avg_places = len(r[4].partition(".")[2])
        tol = 0.5 * 10 ** -cells_places + 0.5 * 10 ** -avg_places
        row = table[(r[0], r[1])]
        assert len(row.tasks) == 38
        assert abs(row.mean_of_tasks - row.average) <= tol + 1e-12, row.label
        assert row.decimals == max(cells_places, avg_places)


def test_an_altered_cell_breaks_the_average_check(tmp_path, source_dir):
    header, rows = _raw(source_dir / "openclip_results.csv")
    r = next(r for r in rows if r[0] == "ViT-g-14")
    r[5] = f"{float(r[5]) + 0.01:.4f}"  # one ImageNet cell off by a point: the mean moves 0.00026
    path = tmp_path / "altered.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    row = pub.read_results(path)[(r[0], r[1])]
    assert abs(row.mean_of_tasks - row.average) > 1e-4


# --- units -------------------------------------------------------------------------------------
def test_gflops_become_gmacs_once_and_convnext_xxlarge_is_the_cards_198():
    """convnext_xxlarge's image tower: 395.94 GFLOPs in the profile, so 197.97 GMAC, the
    card's "198 GMAC" (read from the card itself)."""
    _, rows = _raw(SOURCE / "model_profile.csv")
    raw = {r[0]: r for r in rows}
    for name, p in pub.read_profiles().items():
        assert p.image_gmacs * 2 == pytest.approx(float(raw[name][9]))
        assert p.text_gmacs * 2 == pytest.approx(float(raw[name][10]))
        assert p.gmacs * 2 == pytest.approx(float(raw[name][8]))
    xxl = pub.model_profile("convnext_xxlarge")
    assert xxl.image_gmacs == pytest.approx(float(raw["convnext_xxlarge"][9]) / 2)
    card = CARD.read_text()
    (card_gmac,) = re.findall(r"(\d+) GMAC and [\d.]+ MActs @ 256x256 for image", card)
    assert round(xxl.image_gmacs) == int(card_gmac) and xxl.image_size == 256
    result = pub.published_result("convnext_xxlarge", "laion2b_s34b_b82k_augreg_soup")
    assert result.gmacs == pytest.approx(result.gflops / 2)


def test_gmacs_of_a_layer_counted_by_torch_are_half_its_flops():
    """The tables' convention (a multiply-add is two FLOPs) is torch's FlopCounterMode's, which
    this package's MAC counts halve: a 3x4 @ 4x5 product is 60 multiply-adds."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        torch.ones(3, 4) @ torch.ones(4, 5)
    assert pub.gflops_to_gmacs(counter.get_total_flops()) == 3 * 4 * 5


# --- failed tasks ------------------------------------------------------------------------------
def test_a_zero_task_is_failed_and_the_published_average_keeps_it(source_dir):
    header, rows = _raw(source_dir / "openclip_results.csv")
    r = next(r for r in rows if (r[0], r[1]) == ("convnext_xxlarge",
                                                 "laion2b_s34b_b82k_augreg_soup"))
    zero = [header[i] for i, c in enumerate(r) if i >= 5 and float(c) == 0]
    row = pub.published_result(r[0], r[1])
    assert row.failed_tasks == tuple(zero) and zero  # FMoW, per the source's README
    assert pub.format_task(row.task(zero[0])) == pub.FAILED
    assert pub.format_task(row.imagenet_top1) == f"{100 * float(r[5]):.2f}"
    assert row.average == float(r[4])  # kept as published
    ok = [float(c) for c in r[5:] if float(c) != 0]
    assert row.average_without_failed == pytest.approx(sum(ok) / len(ok))
    assert row.average_without_failed > row.average
    assert row.mean_of_tasks == pytest.approx(sum(map(float, r[5:])) / 38)
    ok_row = pub.published_result("ViT-H-14", "laion2b_s32b_b79k")
    assert ok_row.failed_tasks == () and ok_row.average_without_failed == ok_row.mean_of_tasks


# --- errors ------------------------------------------------------------------------------------
def test_unknown_names_and_tags_are_one_line_naming_the_file():
    with pytest.raises(pub.PublishedLookupError, match=r"openclip_results.csv.*laion2b_s34b_b88k"):
        pub.published_result("ViT-g-14", "laion2b_s34b")
    with pytest.raises(LookupError, match=r"openclip_results.csv: no model 'ViT-G-14'"):
        pub.published_result("ViT-G-14", "laion2b_s39b_b160k")
    with pytest.raises(pub.PublishedLookupError) as e:
        pub.model_profile("convnext_xxl")
    # shown as it is, one line: not a KeyError, whose str() would wrap it in quotes
    assert not isinstance(e.value, KeyError)
    assert str(e.value).startswith("model_profile.csv: no model 'convnext_xxl'; did you mean")
    assert "\n" not in str(e.value) and str(e.value).endswith("?")
    with pytest.raises(pub.PublishedLookupError) as e:
        pub.published_result("ViT-H-14", "laion2b_s32b_b79k").task("FMOW")
    assert str(e.value).startswith("openclip_results.csv: no task column 'FMOW'; known: [")


def test_a_damaged_table_names_the_file_line_and_column(tmp_path, source_dir):
    header, rows = _raw(source_dir / "openclip_results.csv")
    rows[2][7] = "n/a"
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    column = re.escape(header[7])
    with pytest.raises(ValueError, match=rf"bad.csv:4: column '{column}' holds 'n/a'"):
        pub.read_results(path)
    short = tmp_path / "short.csv"
    short.write_text("model,image_size\nx,224\n")
    with pytest.raises(ValueError, match="short.csv: header lacks column"):
        pub.read_profiles(short)


def test_convnet_family_by_open_clip_name():
    assert [pub.is_convnet(n) for n in ("convnext_xxlarge", "RN50x64", "ViT-g-14", "EVA02-E-14",
                                        "coca_ViT-L-14")] == [True, True, False, False, False]
