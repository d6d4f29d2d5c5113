"""A long video's timeline is drawn from at most TIMELINE_POINTS points per line (runs of source
frames averaged, gaps kept), so its memory does not grow with the video; short ones are unchanged."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from sse.fusion.evaluate import TIMELINE_POINTS, _binned, timeline_figure


def test_runs_of_rows_become_their_mean_and_empty_runs_stay_gaps():
    x = np.arange(10, dtype=np.float64)
    lines = np.array([[1.0], [3.0], [np.nan], [np.nan], [np.nan], [np.nan], [2.0], [4.0], [6.0], [5.0]])
    bx, bl = _binned(x, lines, 4)  # runs of 3: rows 0-2, 3-5, 6-8, 9
    np.testing.assert_allclose(bx, [1.0, 4.0, 7.0, 9.0])
    np.testing.assert_allclose(bl[[0, 2, 3], 0], [2.0, 4.0, 5.0])
    assert np.isnan(bl[1, 0])


def test_few_rows_are_drawn_as_they_are():
    x, lines = np.arange(5.0), np.random.default_rng(0).random((5, 7))
    bx, bl = _binned(x, lines, 5)
    assert bx is x and bl is lines


def _line_points(fig) -> list[int]:
    return [len(line.get_xdata()) for line in fig.axes[0].get_lines()]


def test_an_hour_of_frames_draws_at_most_the_points_the_figure_can_show():
    rng = np.random.default_rng(1)
    frames = np.arange(0, 108_000, 3)  # one face every third source frame of an hour at 30 fps
    probs = rng.dirichlet(np.ones(7), len(frames))
    fig = timeline_figure(probs, "long", frame_indices=frames.tolist(), fps=29.97)
    try:
        points = _line_points(fig)
        assert len(points) == 7 and max(points) <= TIMELINE_POINTS
        y = fig.axes[0].get_lines()[0].get_ydata()
        assert np.isfinite(y).all()  # every run holds a face: no gap
        np.testing.assert_allclose(np.mean(y), probs[:, 0].mean(), rtol=1e-2)
    finally:
        plt.close(fig)


def test_a_short_video_keeps_one_point_per_source_frame():
    frames = np.array([3, 4, 5, 9, 10])
    probs = np.random.default_rng(2).dirichlet(np.ones(7), len(frames))
    fig = timeline_figure(probs, "short", frame_indices=frames.tolist(), fps=None)
    try:
        assert _line_points(fig) == [8] * 7  # source frames 3..10, gaps at 6-8
    finally:
        plt.close(fig)
