"""People from track fragments, photo sets, undecodable frames and the list files, on hand-made cases
(no model, no real data): identity links across cuts, never across a shared frame; a track whose
identity changes is split; the lists read back through the fusion's readers."""

import csv

import cv2
import numpy as np
import pytest

from sse.faces.boxes import Box
from sse.faces.cli import main
from sse.faces.decode import MediaReader, is_frame_sequence
from sse.faces.identity import ChipSampler
from sse.faces.inputs import discover
from sse.faces.lists import FRAMES_HEADER, write_lists
from sse.faces.people import Fragment, LinkConfig, describe_tracks, link_people
from sse.faces.pipeline import FrameRecord, interpolate_gaps
from sse.faces.track import Track
from sse.fusion.formats import read_frame_list, read_labels, read_video_list
from sse.fusion.frames import aggregate_frames

RNG = np.random.default_rng(3)
ALICE, BOB = RNG.normal(size=128) * 0.1, RNG.normal(size=128) * 0.1  # about 1.6 apart


def near(base, distance, seed):
    """A descriptor at exactly `distance` from `base`."""
    step = np.random.default_rng(seed).normal(size=128)
    return base + distance * step / np.linalg.norm(step)


def fragment(track_id, frames, x, descriptor=None, size=10):
    boxes = {i: Box(x, 0, x + size, size) for i in frames}
    descriptors = {} if descriptor is None else {min(frames): descriptor}
    return Fragment(track_id, boxes, {i: "detected" for i in frames}, descriptors)


def test_one_person_is_followed_across_cuts_and_two_are_never_joined():
    # shot 1: Alice left; shot 2: Bob at the same place; shot 3: Alice right, larger
    fragments = [
        fragment(0, range(0, 10), 0, near(ALICE, 0.3, 1)),
        fragment(1, range(10, 20), 0, near(BOB, 0.3, 2)),
        fragment(2, range(20, 30), 200, near(ALICE, 0.3, 3), size=20),
    ]
    people = link_people(fragments, [10, 20], LinkConfig())
    assert [p.track_ids for p in people] == [[0, 2], [1]]
    assert [p.person_id for p in people] == [1, 2], "person 1 has the most screen presence"


def test_fragments_sharing_a_frame_are_two_people_even_with_one_face():
    twins = [fragment(0, range(0, 10), 0, ALICE), fragment(1, range(5, 15), 100, ALICE)]
    assert len(link_people(twins, [], LinkConfig())) == 2


def test_in_place_the_faces_either_side_of_the_gap_are_compared():
    # the first fragment turns its head at its end: its mean is far from the next fragment, its
    # last face near
    turned = near(ALICE, 0.9, 4)
    later = near(turned, 0.3, 5)

    def first(x):
        piece = fragment(0, range(0, 10), x, ALICE)
        piece.descriptors.update({3: near(ALICE, 0.05, 7), 6: near(ALICE, 0.05, 8), 9: turned})
        return piece

    assert np.linalg.norm(np.mean(list(first(0).descriptors.values()), axis=0) - later) > 0.6
    in_place = [first(0), fragment(1, range(13, 20), 1, later)]
    assert len(link_people(in_place, [], LinkConfig(link_gap=5))) == 1
    elsewhere = [first(0), fragment(1, range(13, 20), 300, later)]
    assert len(link_people(elsewhere, [], LinkConfig(link_gap=5))) == 2
    other_person = [first(0), fragment(1, range(13, 20), 1, near(BOB, 0.3, 6))]
    assert len(link_people(other_person, [], LinkConfig(link_gap=5))) == 2, "in place, another face"


def test_min_frames_drops_short_people():
    people = link_people([fragment(0, range(0, 10), 0, ALICE), fragment(1, range(0, 2), 100, BOB)], [],
                         LinkConfig(), min_frames=3)
    assert [p.track_ids for p in people] == [[0]]


def _track_with_chips(identities):
    """A 20-frame track with a chip every 5 frames; chip k's descriptor is identities[k]."""
    track = Track(0, {i: Box(0, 0, 10, 10) for i in range(20)}, {i: "detected" for i in range(20)})
    sampler = ChipSampler(8)
    for k, _ in enumerate(identities):
        sampler.add(5 * k, lambda k=k: np.full((2, 2, 3), k, dtype=np.uint8))
    calls = []

    def describe(chips):
        calls.append(len(chips))
        return np.array([identities[int(chip[0, 0, 0])] for chip in chips])

    return track, {0: sampler}, describe, calls


def test_a_track_that_slides_onto_another_face_is_split_and_the_unsure_frames_dropped():
    track, samplers, describe, calls = _track_with_chips([ALICE, near(ALICE, 0.2, 5), BOB, near(BOB, 0.2, 6)])
    fragments = describe_tracks([track], samplers, describe, LinkConfig(samples=3))
    assert [(min(f.boxes), max(f.boxes)) for f in fragments] == [(0, 5), (10, 19)]
    assert sum(calls) == 4, "3 samples, then the one chip not yet described"


def test_one_odd_chip_does_not_split_a_track():
    track, samplers, describe, _ = _track_with_chips([ALICE, near(ALICE, 0.2, 7), near(ALICE, 0.7, 8), near(ALICE, 0.2, 9)])
    assert len(describe_tracks([track], samplers, describe, LinkConfig(samples=4, split_check=0.6))) == 1


def test_chip_sampler_stays_bounded_and_spans_the_track():
    sampler = ChipSampler(4)
    made = []
    for i in range(0, 100, 5):
        sampler.add(i, lambda i=i: made.append(i) or np.zeros((1, 1, 3), np.uint8))
    assert len(sampler.chips) <= 4
    assert sampler.indices()[0] == 0 and sampler.indices()[-1] >= 60
    assert len(made) < 20, "chips that would be dropped are not cut"


def test_no_interpolation_across_a_cut_or_an_undecodable_frame():
    def records():
        out = [FrameRecord(i) for i in range(6)]
        for i in (0, 5):
            out[i].status, out[i].box, out[i].landmarks = "detected", Box(i, 0, i + 10, 10), np.zeros((68, 2))
        return out

    for barrier in (3, 5):
        blocked = records()
        interpolate_gaps(blocked, max_gap=5, barriers={barrier})
        assert [r.status for r in blocked[1:5]] == ["none"] * 4
    free = records()
    interpolate_gaps(free, max_gap=5)
    assert [r.status for r in free[1:5]] == ["interpolated"] * 4


def _write_images(folder, names, sizes):
    folder.mkdir(parents=True)
    for name, (w, h) in zip(names, sizes):
        cv2.imwrite(str(folder / name), np.full((h, w, 3), 128, np.uint8))


def test_numbered_frames_are_a_sequence_other_images_are_photos(tmp_path):
    _write_images(tmp_path / "seq", ["frame_0001.png", "frame_0002.png", "frame_0010.png"], [(64, 48)] * 3)
    _write_images(tmp_path / "trip", ["beach.jpg", "IMG_2.jpg"], [(64, 48)] * 2)
    _write_images(tmp_path / "sizes", ["1.png", "2.png"], [(64, 48), (48, 64)])
    assert is_frame_sequence(sorted((tmp_path / "seq").iterdir()))
    assert not is_frame_sequence(sorted((tmp_path / "trip").iterdir()))
    assert not is_frame_sequence(sorted((tmp_path / "sizes").iterdir()))
    ids = [job.video_id for job in discover([tmp_path])]
    assert ids == [f"{tmp_path.name}/seq", f"{tmp_path.name}/sizes/1", f"{tmp_path.name}/sizes/2",
                   f"{tmp_path.name}/trip/beach", f"{tmp_path.name}/trip/IMG_2"]
    assert [j.video_id for j in discover([tmp_path / "trip"], image_folders="sequence")] == ["trip"]


def test_an_undecodable_image_is_named_with_its_reason(tmp_path):
    _write_images(tmp_path / "seq", ["f1.png", "f2.png"], [(32, 32)] * 2)
    (tmp_path / "seq" / "f3.png").write_bytes(b"\x89PNG broken")
    frames = list(MediaReader(tmp_path / "seq").frames())
    assert [f.image is None for f in frames] == [False, False, True]
    assert frames[2].source == "f3.png" and "not a decodable image (11 bytes" in frames[2].error
    (tmp_path / "empty.jpg").write_bytes(b"")
    reader = MediaReader(tmp_path / "empty.jpg")
    assert [f.image for f in reader.frames()] == [None]
    with pytest.raises(Exception, match=r"empty.jpg: no frame could be decoded \(empty file\)"):
        reader.check_complete()


def _manifest(video, label, faces, people_frames, fps=25.0):
    frames = []
    for person, indices in people_frames.items():
        for i in indices:
            crop = f"{i:06d}.png" if faces == "target" else f"p{person}/{i:06d}.png"
            frames.append({"index": i, "person": person, "status": "detected", "crop": crop})
    return {"video": video, "label": label, "status": "ok", "settings": {"faces": faces}, "fps": fps,
            "frames": frames, "complete": True}


def test_lists_read_back_by_the_fusion_readers(tmp_path):
    manifests = [
        _manifest("Val/Happy/b", 3, "all", {2: [4, 6], 1: [0, 2]}),
        _manifest("Val/Sad/a", 5, "target", {1: [1, 3]}, fps=None),
        _manifest("Val/x/c", None, "target", {1: [0]}),
    ]
    written = write_lists(tmp_path, manifests)
    assert written.units == ["Val/Happy/b@p1", "Val/Happy/b@p2", "Val/Sad/a", "Val/x/c"]
    assert (tmp_path / "list.txt").read_text().splitlines()[:3] == [
        "Val/Happy/b/p1/000000.png 3", "Val/Happy/b/p1/000002.png 3", "Val/Happy/b/p2/000004.png 3"]
    with open(tmp_path / "frames.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == FRAMES_HEADER
    assert rows[1] == ["Val/Happy/b/p1/000000.png", "Val/Happy/b@p1", "0", "3", "detected", "1", "0.0"]
    assert rows[5] == ["Val/Sad/a/000001.png", "Val/Sad/a", "1", "5", "detected", "1", ""]
    videos = read_video_list(tmp_path / "videos.txt")
    frame_list = read_frame_list(tmp_path / "frames.csv")
    order, video_probs = aggregate_frames(np.eye(7)[[0, 0, 1, 1, 2, 2, 3]], frame_list, videos)
    assert order == videos and video_probs.argmax(1).tolist() == [0, 1, 2, 3]
    names, labels = read_labels(tmp_path / "labels.txt")
    assert names == ["Val/Happy/b@p1", "Val/Happy/b@p2", "Val/Sad/a"] and labels.tolist() == [3, 3, 5]
    write_lists(tmp_path, [manifests[2]])
    assert not (tmp_path / "labels.txt").exists(), "no label known: no stale labels file"


def test_missing_identity_model_is_a_clear_error(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "face.png"), np.zeros((32, 32, 3), np.uint8))
    args = [str(tmp_path / "face.png"), "--out", str(tmp_path / "out"), "--identity-model", str(tmp_path / "no.dat")]
    assert main(args) == 1
    assert f"model file not found: {tmp_path / 'no.dat'}" in capsys.readouterr().err
