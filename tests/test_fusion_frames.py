"""Frame -> video aggregation: each method on hand-computed cases, order and bad frame lists."""
import numpy as np
import pytest

from sse.fusion import aggregate_frames
from sse.fusion.errors import FusionError, FusionWarning
from sse.fusion.formats import read_frame_list

FRAMES = np.array([[0.6, 0.3, 0.1],
                   [0.2, 0.7, 0.1],
                   [0.1, 0.1, 0.8],   # video b
                   [0.4, 0.4, 0.2]])
VIDEOS = ["a", "a", "b", "a"]


def test_mean_is_default_and_follows_video_list_order():
    order, probs = aggregate_frames(FRAMES, VIDEOS, videos=["b.avi", "a.avi"])
    assert order == ["b.avi", "a.avi"]
    np.testing.assert_allclose(probs, [[0.1, 0.1, 0.8], [0.4, 1.4 / 3, 0.4 / 3]])


def test_without_video_list_videos_come_in_order_of_first_frame():
    order, _ = aggregate_frames(FRAMES[::-1], VIDEOS[::-1])
    assert order == ["a", "b"]


def test_median_and_max_are_per_class_then_renormalised():
    _, med = aggregate_frames(FRAMES, VIDEOS, method="median")
    np.testing.assert_allclose(med[0], np.array([0.4, 0.4, 0.1]) / 0.9)
    _, mx = aggregate_frames(FRAMES, VIDEOS, method="max")
    np.testing.assert_allclose(mx[0], np.array([0.6, 0.7, 0.2]) / 1.5)


def test_logmean_is_normalised_geometric_mean():
    _, out = aggregate_frames(FRAMES, VIDEOS, method="logmean")
    geo = np.prod(FRAMES[[0, 1, 3]], axis=0) ** (1 / 3)
    np.testing.assert_allclose(out[0], geo / geo.sum())
    np.testing.assert_allclose(out[1], FRAMES[2])


def test_topk_averages_the_most_confident_frames():
    _, out = aggregate_frames(FRAMES, VIDEOS, method="topk", top_k=2)
    np.testing.assert_allclose(out[0], (FRAMES[0] + FRAMES[1]) / 2)  # confidences 0.6, 0.7, 0.4


def test_frame_of_unknown_video_names_the_list_line(tmp_path):
    path = tmp_path / "frames.txt"
    path.write_text("f0.png a\nf1.png a\nf2.png zzz\nf3.png a\n")
    with pytest.raises(FusionError, match=r"frames\.txt:3: frame of unknown video 'zzz'"):
        aggregate_frames(FRAMES, read_frame_list(path), videos=["a.avi", "b.avi"])


def test_video_without_frames_is_an_error_or_uniform_with_warning():
    with pytest.raises(FusionError, match="video 'c' has no frames"):
        aggregate_frames(FRAMES, VIDEOS, videos=["a", "b", "c"])
    with pytest.warns(FusionWarning, match="uniform"):
        _, out = aggregate_frames(FRAMES, VIDEOS, videos=["a", "b", "c"], missing="uniform")
    np.testing.assert_allclose(out[2], [1 / 3] * 3)


def test_nan_frame_and_row_count_mismatch_are_errors():
    bad = FRAMES.copy()
    bad[2, 1] = np.nan
    with pytest.raises(FusionError, match="frame row 3 .*'b'"):
        aggregate_frames(bad, VIDEOS)
    with pytest.raises(FusionError, match="3 frames but the matrix has 4 rows"):
        aggregate_frames(FRAMES, VIDEOS[:3])


def test_unknown_method_and_negative_scores_in_logmean_are_errors():
    with pytest.raises(FusionError, match="unknown aggregation method 'mode'"):
        aggregate_frames(FRAMES, VIDEOS, method="mode")
    with pytest.raises(FusionError, match="negative score"):
        aggregate_frames(FRAMES - 0.15, VIDEOS, method="logmean")
