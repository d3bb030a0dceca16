"""The efficiency figure (viz/efficiency.py): its points are the shipped published rows (read from
the shipped CSV here, not typed), the model is highlighted with its measured GMACs, the cost unit
is GMACs converted from the tables' GFLOPs once, and the throughput panel is drawn only from
measured speeds."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from unirepclip.analysis.errata import REFERENCE_MODEL
from unirepclip.data import published
from unirepclip.viz import efficiency as eff


def _csv(path, key):
    with open(path, newline="") as f:
        return {key(r): r for r in csv.DictReader(f)}


def test_points_are_the_published_rows_with_gflops_halved_and_the_model_first():
    results = _csv(published.RESULTS_FILE, lambda r: (r["name"], r["pretrained"]))
    profiles = _csv(published.PROFILE_FILE, lambda r: r["model"])
    points = eff.efficiency_points(123.0, reference_size=224)
    me, peers = points[0], points[1:]
    assert (me.label, me.top1, me.gmacs, me.source, me.highlight) == (
        REFERENCE_MODEL, 75.7, 123.0, "measured", True)   # the card's 75.7
    assert [p.label for p in peers] == [f"{n} {t}" for n, t in published.PEERS]
    for p, (name, tag) in zip(peers, published.PEERS):
        assert p.source == "published" and not p.highlight and p.images_per_s is None
        assert p.top1 == pytest.approx(100 * float(results[name, tag]["ImageNet 1k"]))
        assert p.gmacs == pytest.approx(float(profiles[name]["image_gflops"]) / 2)   # 2 FLOPs a MAC
        assert p.image_size == int(profiles[name]["image_size"])
    xxl = next(p for p in peers if p.label.startswith("convnext_xxlarge"))
    assert xxl.gmacs == pytest.approx(198, abs=0.05)   # its card: 198 GMAC (395.94 GFLOPs)


def test_measured_speeds_and_bad_ones():
    label = "ViT-H-14 laion2b_s32b_b79k"
    points = eff.efficiency_points(100.0, images_per_s={REFERENCE_MODEL: 50.0, label: 40.0})
    rates = {p.label: p.images_per_s for p in points}
    assert rates[REFERENCE_MODEL] == 50.0 and rates[label] == 40.0
    assert sum(v is not None for v in rates.values()) == 2
    with pytest.raises(ValueError, match="names no point: \\['ViT-Z'\\]"):
        eff.efficiency_points(100.0, images_per_s={"ViT-Z": 1.0})
    with pytest.raises(ValueError, match="must be a positive number"):
        eff.efficiency_points(100.0, images_per_s={label: 0.0})
    with pytest.raises(ValueError, match="reference_gmacs"):
        eff.efficiency_points(float("nan"))


def test_records_and_the_figure_place_each_point_at_its_values():
    points = eff.efficiency_points(100.0, reference_top1=70.0)
    rec = eff.efficiency_records(points)
    assert rec["unit"] == eff.GMACS_AXIS and "1 MAC = 2 FLOPs" in rec["unit"]
    assert rec["throughput"] == eff.NOT_MEASURED
    assert rec["points"][REFERENCE_MODEL]["top1"] == 70.0 and rec["points"][REFERENCE_MODEL]["highlight"]
    fig = eff.plot_efficiency(points)
    cost_ax, speed_ax = fig.axes
    assert cost_ax.get_xscale() == "log" and cost_ax.get_xlabel() == eff.GMACS_AXIS
    placed = [tuple(c.get_offsets()[0]) for c in cost_ax.collections]
    assert placed == [(pytest.approx(p.gmacs), pytest.approx(p.top1)) for p in points]
    sizes = [float(c.get_sizes()[0]) for c in cost_ax.collections]
    assert sizes[0] > max(sizes[1:])   # the model stands out
    (said,) = speed_ax.texts
    assert said.get_text().split() == eff.NOT_MEASURED.split() and not speed_ax.axison
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("published" in t for t in legend) and any("measured here" in t for t in legend)
    fast = eff.plot_efficiency(eff.efficiency_points(
        100.0, images_per_s={REFERENCE_MODEL: 80.0, "ViT-bigG-14 laion2b_s39b_b160k": 20.0}))
    speed = fast.axes[1]
    got = sorted(tuple(np.round(c.get_offsets()[0], 6)) for c in speed.collections)
    assert got == [(20.0, 80.09), (80.0, 75.7)] and speed.axison


def test_the_notebooks_model_finds_its_point_by_name_and_tag():
    assert eff.point_label("CLIP-UniRepLKNet-L", "/x.bin") == REFERENCE_MODEL
    assert eff.point_label("CLIP-UniRepLKNet-L-320", "") == REFERENCE_MODEL
    assert eff.point_label("ViT-g-14", "laion2b_s12b_b42k") == "ViT-g-14 laion2b_s12b_b42k"
    assert eff.point_label("ViT-g-14", "laion400m_e32") is None   # not the published peer row
    assert eff.point_label("UniRepLKNet-Demo", "demo") is None
    labels = {p.label for p in eff.efficiency_points(1.0)}
    assert all(eff.point_label(n, t) in labels for n, t in published.PEERS)
