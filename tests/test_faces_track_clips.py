"""Tracking on the real clips of shared/data/media/videos: the target track covers the frames where
the target's face is visible and does not jump to another person."""

import numpy as np
import pytest

from sse.faces.pipeline import FaceModels, PipelineConfig, analyse

from conftest import DATA, needs_shared_data

VIDEOS = DATA / "media" / "videos"
needs_videos = needs_shared_data("media", "videos")


@pytest.fixture(scope="module")
def models():
    return FaceModels.load(PipelineConfig())


def centre_jumps(records):
    """Largest frame-to-frame move of the target box centre, relative to its width."""
    boxes = [(r.index, r.box) for r in records if r.box is not None]
    jumps = []
    for (i, a), (j, b) in zip(boxes, boxes[1:]):
        if j - i == 1:
            move = np.hypot((a.left + a.right - b.left - b.right) / 2, (a.top + a.bottom - b.top - b.bottom) / 2)
            jumps.append(move / a.width)
    return max(jumps)


@needs_videos
def test_talking_head_gif_is_followed_in_every_frame(models):
    analysis = analyse(VIDEOS / "elon-musk-smoke.gif", PipelineConfig(), models)
    statuses = [r.status for r in analysis.records]
    assert len(statuses) == 35
    assert "none" not in statuses
    assert statuses.count("detected") == 7  # every 5th frame
    assert all(r.pose is not None and r.landmarks.shape == (68, 2) for r in analysis.records)


@needs_videos
def test_hamilton_target_is_the_singer_over_his_frontal_shot(models):
    # Frames 82-210: Lin-Manuel Miranda facing the camera (new shot at 82, found by the detection at 85
    # and followed back); 211-274: audience shots (other people);
    # 0-83: a far stage shot and a profile close-up (HOG is a frontal detector).
    analysis = analyse(VIDEOS / "short_hamilton_clip.mp4", PipelineConfig(), models)
    covered = {r.index for r in analysis.records if r.status != "none"}
    shot = set(range(84, 210))
    assert len(shot & covered) >= 0.95 * len(shot)
    assert not covered & set(range(215, 275)), "the target must not jump to the audience"
    assert centre_jumps(analysis.records) < 0.5


@needs_videos
def test_stride_keeps_source_frame_indices(models):
    analysis = analyse(VIDEOS / "elon-musk-smoke.gif", PipelineConfig(stride=3, detect_every=2), models)
    assert [r.index for r in analysis.records] == list(range(0, 35, 3))


@needs_videos
def test_street_scene_follows_one_walker_without_identity_swaps(models):
    analysis = analyse(VIDEOS / "facenet_pytorch_video.mp4", PipelineConfig(), models)
    assert len(analysis.tracks) >= 2, "several people are tracked"
    target = [r for r in analysis.records if r.status != "none"]
    assert len(target) >= 40
    assert centre_jumps(analysis.records) < 0.5
