"""A face the detector misses for a round or two after it appears (a dark or soft face: the audience
man of bench/film_identity.py's close-ups) is followed back from where it is found over the shot's
last frames, detection frames included, never across a cut (issue 18: coverage of each person)."""

import numpy as np

from sse.faces.boxes import Box
from sse.faces.detect import Detection
from sse.faces.track import MultiFaceTracker, TrackerConfig

BOX = Box(100, 60, 164, 124)


def frames(count, seed=0):
    """A still scene: a textured 64-pixel square on a smooth background (a face the tracker holds)."""
    rng = np.random.default_rng(seed)
    image = np.full((240, 320), 90, np.uint8)
    image[60:124, 100:164] = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    return [image.copy() for _ in range(count)]


def run(config, cut_at=None):
    tracker = MultiFaceTracker(config)
    for index, image in enumerate(frames(16)):
        if index == cut_at:
            tracker.cut()
        # the detector misses the face on its first rounds (frames 0 and 5) and finds it at 10
        detections = ([Detection(BOX, 1.0, "hog")] if index >= 10 else []) if tracker.needs_detection() else None
        tracker.step(index, image, detections)
    return tracker.tracks


def test_a_late_found_face_is_followed_back_over_missed_detection_rounds():
    tracks = run(TrackerConfig(detect_every=5))
    assert len(tracks) == 1
    assert min(tracks[0].boxes) == 0 and tracks[0].status[10] == "detected"
    assert all(tracks[0].boxes[i].iou(BOX) > 0.9 for i in range(10))


def test_follow_back_is_bounded_and_stops_at_a_cut():
    assert min(run(TrackerConfig(detect_every=5, follow_back=4))[0].boxes) == 6
    tracks = run(TrackerConfig(detect_every=5), cut_at=3)  # detections at 3, 8 (missed) and 13
    assert len(tracks) == 1 and min(tracks[0].boxes) == 3 and tracks[0].status[13] == "detected"
    assert TrackerConfig(detect_every=4).back_frames == 12
