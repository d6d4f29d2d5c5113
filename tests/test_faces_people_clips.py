"""People on the real clips and photos of shared/data/media: each person id holds one face (checked
with dlib's descriptor on frames spread over the person), the target covers its person's frames
across shot cuts, photos are photos, undecodable files are named, and the lists feed sse-fuse and
sse-evaluate as written."""

import json
import shutil

import cv2
import numpy as np
import pytest

from sse.faces.cli import main
from sse.faces.contact import pick_evenly
from sse.faces.identity import descriptor_distance
from sse.faces.pipeline import FaceModels, PipelineConfig, analyse
from sse.fusion.cli import evaluate_main, fuse_main

from conftest import DATA

MEDIA = DATA / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"real data not found at {MEDIA}")

HAMILTON = MEDIA / "videos" / "short_hamilton_clip.mp4"
GIF = MEDIA / "videos" / "elon-musk-smoke.gif"
STREET = MEDIA / "videos" / "facenet_pytorch_video.mp4"
SAME_FACE = 0.6  # dlib's threshold: frames of one person lie within it of the person's mean


@pytest.fixture(scope="module")
def models():
    return FaceModels.load(PipelineConfig())


@pytest.fixture(scope="module")
def hamilton(models):
    return analyse(HAMILTON, PipelineConfig(faces="all"), models)


def read_frames(path, wanted):
    capture, frames, index = cv2.VideoCapture(str(path)), {}, 0
    while len(frames) < len(wanted):
        ok, image = capture.read()
        if not ok:
            break
        if index in wanted:
            frames[index] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        index += 1
    return frames


def person_descriptors(path, analysis, models, per_person=6):
    """{person id: (n, 128) descriptors} on frames with a found (not interpolated) face, spread evenly."""
    chosen = {}
    for person in analysis.people:
        found = [r for r in person.records if r.status in ("detected", "tracked")]
        chosen[person.person_id] = [found[k] for k in pick_evenly(len(found), per_person)]
    frames = read_frames(path, {r.index for records in chosen.values() for r in records})
    return {
        pid: np.array([models.descriptor.describe_frame(frames[r.index], r.box, r.landmarks) for r in records])
        for pid, records in chosen.items()
    }


def assert_one_face_per_person(descriptors):
    means = {pid: d.mean(axis=0) for pid, d in descriptors.items()}
    for pid, found in descriptors.items():
        for k, descriptor in enumerate(found):
            own = descriptor_distance(descriptor, means[pid])
            assert own < SAME_FACE, f"person {pid}, sample {k}: {own:.2f} from the person's mean"
            for other, mean in means.items():
                if other != pid:
                    assert descriptor_distance(descriptor, mean) > own, f"person {pid} sample {k} is nearer person {other}"


def test_hamilton_people_hold_one_face_each(hamilton, models):
    assert len(hamilton.people) >= 2
    assert_one_face_per_person(person_descriptors(HAMILTON, hamilton, models))


def test_hamilton_target_is_the_singer_across_the_cut_and_not_the_audience(hamilton):
    # shots: 0-19 wide stage shot (the singer small), 20-81 profile close-up (HOG misses it),
    # 82-210 the singer facing the camera, 211-274 the audience (a woman in front)
    assert hamilton.cuts == [20, 82, 211]
    target, second = hamilton.people[0], hamilton.people[1]
    covered = {r.index for r in target.records if r.landmarks is not None}
    assert len(covered & set(range(84, 210))) >= 0.95 * 126
    assert len(covered & set(range(0, 20))) >= 15, "the far shot of the same singer joins his person"
    assert not covered & set(range(211, 275))
    audience = {r.index for r in second.records if r.landmarks is not None}
    assert audience and min(audience) >= 211
    assert all(r.status != "interpolated" or not 19 <= r.index <= 82 for r in target.records), \
        "no interpolation across a cut"


def test_talking_head_is_one_person_in_every_frame(models):
    analysis = analyse(GIF, PipelineConfig(faces="all"), models)
    assert [p.person_id for p in analysis.people] == [1]
    assert all(r.landmarks is not None for r in analysis.records)


@pytest.mark.slow
def test_street_walkers_are_never_merged(models):
    analysis = analyse(STREET, PipelineConfig(faces="all", stride=2), models)
    assert len(analysis.people) >= 2
    # soft faces (no face trusted, quality.TRUST) are joined only in place: their descriptors are no
    # evidence either way (two walkers side by side lie 0.35 apart), so only trusted people are
    # checked by descriptor, and an untrusted person is one track or tracks continuing in place
    trusted = [p for p in analysis.people if not p.identity.startswith("no face trusted")]
    assert trusted
    described = person_descriptors(STREET, analysis, models, per_person=4)
    assert_one_face_per_person({p.person_id: described[p.person_id] for p in trusted})
    for person in analysis.people:
        if person not in trusted:
            frames = [r.index for r in person.records if r.landmarks is not None]
            assert max(frames) - min(frames) <= 2 * len(frames), f"person {person.person_id} joined across a gap"


def test_photo_folder_is_a_set_of_photos_and_the_lists_feed_fuse_and_evaluate(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(MEDIA / "photos" / "face_recognition_two_people.jpg", photos / "two.jpg")
    shutil.copy(MEDIA / "photos" / "dlib_2008_002470.jpg", photos / "group.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    labels = tmp_path / "labels.csv"
    labels.write_text("two,Happy\ngroup,Neutral\n")
    out = tmp_path / "out"
    assert main([str(photos), "--out", str(out), "--faces", "all", "--label-csv", str(labels), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "unreadable: photos/broken:" in printed and "not a decodable image" in printed
    broken = json.loads((out / "photos/broken/manifest.json").read_text())
    assert broken["status"] == "unreadable" and "broken.jpg" in broken["reason"]
    two = json.loads((out / "photos/two/manifest.json").read_text())
    assert [p["id"] for p in two["people"]] == [1, 2]
    assert [(f["index"], f["person"], f["status"]) for f in two["frames"]] == [(0, 1, "detected"), (0, 2, "detected")]
    assert (out / "photos/two/p2/000000.png").is_file()
    group = json.loads((out / "photos/group/manifest.json").read_text())
    assert len(group["people"]) == 6
    units = (out / "videos.txt").read_text().split()
    assert units == [f"photos/group@p{k}" for k in range(1, 7)] + ["photos/two@p1", "photos/two@p2"]
    rows = len((out / "list.txt").read_text().splitlines())
    features = tmp_path / "features.npy"
    np.save(features, np.tile(np.eye(7)[4], (rows, 1)))
    predictions = tmp_path / "pred.txt"
    assert fuse_main([str(features), "--frame-list", str(out / "frames.csv"), "--video-list",
                      str(out / "videos.txt"), "-o", str(predictions)]) == 0
    assert evaluate_main([str(predictions), "--video-list", str(out / "videos.txt"),
                          "--labels", str(out / "labels.txt")]) == 0
    assert "accuracy" in capsys.readouterr().out.lower()


def test_undecodable_frame_of_a_sequence_is_named_and_not_interpolated(tmp_path):
    frames = tmp_path / "clip"
    frames.mkdir()
    capture, index = cv2.VideoCapture(str(GIF)), 0
    while index < 12:
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(frames / f"frame_{index:03d}.png"), image)
        index += 1
    (frames / "frame_006.png").write_bytes(b"truncated")
    out = tmp_path / "out"
    assert main([str(frames), "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "clip/manifest.json").read_text())
    assert manifest["undecodable"] == [
        {"index": 6, "file": "frame_006.png", "reason": "not a decodable image (9 bytes; OpenCV imread failed)"}]
    by_index = {f["index"]: f for f in manifest["frames"]}
    assert by_index[6]["status"] == "undecodable" and by_index[6]["crop"] is None
    assert all(by_index[i]["crop"] for i in range(12) if i != 6)
