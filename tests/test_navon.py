"""Navon figures (unirepclip.data.navon): exact masks at both levels, any size, and the controls.

Truth: the element stamp drawn independently (the demo world's outline filled by PIL on its own
canvas), pixel counts, containment and disjointness checked pixel by pixel."""
import numpy as np
import pytest

from unirepclip.data.navon import (
    KINDS, element_stamp, fill_polygon, navon_set, render_elements_alone, render_navon)
from unirepclip.data.synthetic import SHAPES


@pytest.mark.parametrize("size,element_scale", [(64, 0.15), (97, 0.12), (160, 0.1)])
@pytest.mark.parametrize("pair", [("circle", "star"), ("star", "circle"), ("ring", "cross"),
                                  ("crescent", "triangle")])
def test_masks_are_exact_at_both_levels(size, element_scale, pair):
    f = render_navon(*pair, image_size=size, element_scale=element_scale, colour="red")
    assert f.image.shape == (size, size, 3) and f.n_elements >= 3
    # the local mask is the union of the elements, which are disjoint
    np.testing.assert_array_equal(f.element_masks.any(0), f.local_mask)
    assert f.element_masks.sum() == f.local_mask.sum()
    # every element lies within the global shape's mask
    for m in f.element_masks:
        assert not (m & ~f.global_mask).any()
    # each element is the stamp of the local shape, translated
    stamp = element_stamp(pair[1], f.element_px)
    for m in f.element_masks:
        ys, xs = np.nonzero(m)
        y0, x0 = ys.min(), xs.min()
        sy, sx = np.nonzero(stamp)
        np.testing.assert_array_equal(m[y0 - sy.min():y0 - sy.min() + stamp.shape[0],
                                        x0 - sx.min():x0 - sx.min() + stamp.shape[1]], stamp)
        assert m.sum() == stamp.sum()
    # exactly the local mask's pixels are painted, in the figure's colour
    background = f.image[~f.local_mask]
    assert (background == background[0]).all()
    assert (f.image[f.local_mask] == (215, 35, 35)).all()
    # the global mask is the global shape's own outline at its size, centred
    diameter = 0.95 * (size - 1)
    np.testing.assert_array_equal(
        f.global_mask, fill_polygon(pair[0], diameter, size, ((size - 1) / 2, (size - 1) / 2)))


def test_the_global_mask_grows_with_the_square_of_the_size():
    counts = [render_navon("square", "circle", image_size=s).global_mask.sum() for s in (64, 128)]
    # a square of diagonal 0.95 (s - 1): area (0.95 (s - 1))^2 / 2, within the outline's pixels
    for s, c in zip((64, 128), counts):
        area = (0.95 * (s - 1)) ** 2 / 2
        assert abs(c - area) < 4 * 0.95 * (s - 1) / np.sqrt(2) + 4


def test_elements_alone_control_is_the_same_stamp_once():
    fig = render_navon("heart", "triangle", image_size=96, element_scale=0.15)
    alone = render_elements_alone("triangle", image_size=96, element_scale=0.15)
    assert alone.n_elements == 1 and alone.element_px == fig.element_px
    assert alone.local_mask.sum() == element_stamp("triangle", fig.element_px).sum()
    np.testing.assert_array_equal(alone.local_mask, alone.global_mask)
    assert alone.global_shape == alone.local_shape == "triangle"


def test_set_holds_every_pair_and_both_controls():
    st = navon_set(image_size=64, colours=("blue", "green"))
    n = len(SHAPES)
    assert len(st.select("conflict")) == 2 * n * (n - 1)
    assert len(st.select("plain")) == len(st.select("elements_alone")) == 2 * n
    for i in st.select("conflict"):
        assert st.global_shape[i] != st.local_shape[i]
    for i in st.select("plain"):
        assert st.global_shape[i] == st.local_shape[i]
    assert st.images.shape == (len(st), 64, 64, 3) and set(st.kind) == set(KINDS)


def test_sizes_that_cannot_hold_an_element_are_refused():
    with pytest.raises(ValueError, match="element size"):
        render_navon("circle", "star", image_size=16, element_scale=0.1)
    with pytest.raises(ValueError, match="element_scale"):
        render_navon("circle", "star", element_scale=0.96)
    with pytest.raises(ValueError, match="global_shape='blob'"):
        render_navon("blob", "star")
