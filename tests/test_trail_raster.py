"""The trails' raster: segments clipped to the view and stamped into a buffer, pixels by hand.

A pixel (i, j) of a ``w``-wide buffer is ``buf[j * w + i]`` and covers [i, i+1) × [j, j+1);
a sample at (x, y) lands in pixel (floor x, floor y); a stamp two wide covers the sample's
row and the one below (a mostly horizontal line) or its column and the next.
"""

from __future__ import annotations

import numpy as np
import pytest

from widgets.map.trail_item import clip_segments, stamp_segments

W, H = 12, 10
INK = 0xFF00FF00


def _draw(x0, y0, x1, y1, width):
    buf = np.zeros(W * H, np.uint32)
    a = [np.array([v], float) for v in (x0, y0, x1, y1)]
    stamp_segments(buf, W, H, *a, width, INK)
    ys, xs = np.nonzero(buf.reshape(H, W) == INK)
    return set(zip(xs.tolist(), ys.tolist(), strict=True))


def test_a_horizontal_line_one_and_two_pixels_wide():
    assert _draw(2.5, 4.5, 7.5, 4.5, 1.0) == {(x, 4) for x in range(2, 8)}
    # Two wide: half a pixel up and down from the line's centre, rows 4 and 5.
    assert _draw(2.5, 4.5, 7.5, 4.5, 1.6) == {(x, y) for x in range(2, 8) for y in (4, 5)}


def test_a_vertical_and_a_diagonal_line():
    assert _draw(3.5, 1.5, 3.5, 6.5, 1.0) == {(3, y) for y in range(1, 7)}
    assert _draw(3.5, 1.5, 3.5, 6.5, 1.6) == {(x, y) for y in range(1, 7) for x in (3, 4)}
    # A 45° line, one sample per pixel along x: the diagonal pixels, none skipped.
    assert _draw(1.5, 1.5, 5.5, 5.5, 1.0) == {(k, k) for k in range(1, 6)}


def test_the_newer_colour_written_over_the_older():
    buf = np.zeros(W * H, np.uint32)
    a = [np.array([v], float) for v in (1.5, 2.5, 9.5, 2.5)]
    stamp_segments(buf, W, H, *a, 1.0, 0x11111111)
    b = [np.array([v], float) for v in (5.5, 0.5, 5.5, 8.5)]
    stamp_segments(buf, W, H, *b, 1.0, 0x22222222)
    grid = buf.reshape(H, W)
    assert grid[2, 5] == 0x22222222 and grid[2, 4] == 0x11111111


def test_clipping_to_the_view():
    box = (0.0, 0.0, 10.0, 10.0)
    x0, y0, x1, y1 = (np.array(v, float) for v in (
        [-10.0, 20.0, 2.0, -5.0], [5.0, 20.0, 2.0, -5.0], [20.0, 30.0, 8.0, 15.0],
        [5.0, 25.0, 3.0, 15.0]))
    a, b, c, d = clip_segments(x0, y0, x1, y1, box)
    # Across the view: cut at both edges; wholly outside: gone; inside: as it was;
    # the diagonal through the box from corner to corner.
    assert np.column_stack((a, b, c, d)).ravel().tolist() == pytest.approx(
        [0.0, 5.0, 10.0, 5.0, 2.0, 2.0, 8.0, 3.0, 0.0, 0.0, 10.0, 10.0])
