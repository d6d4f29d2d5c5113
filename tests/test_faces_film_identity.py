"""People on film (issue 18, goals): a clip cut together in a temporary folder from the shared media,
a speaker (Musk, the GIF) with a small blurred bystander (Schwimmer, pasted from the Friends photo:
his blurred face's descriptor lands within dlib's 0.6 of the singer's, the issue's trap) behind
him, cut back and forth with a second speaker (the Hamilton singer), run through the real path
(`sse-preprocess --faces all`), each person id scored against the person every face is by
construction (bench/film_identity.py): every id at least 98 % one person, each speaker's best id
covering at least 90 % of his frames, the bystander joined to neither speaker, no false person."""

import itertools

import numpy as np
import pytest

from conftest import REPO, needs_shared_data, DATA

import sys

sys.path.insert(0, str(REPO / "bench"))

import film_identity as F  # noqa: E402

MEDIA = DATA / "media"
needs_media = needs_shared_data("media", "videos")

BYSTANDER = F.Paste(F.FRIENDS, 0, 0, 46, 1.5, 40, 40)  # Schwimmer, 46 px, blurred
SHOTS = [
    F.Shot(F.GIF, list(range(0, 12)), F._full(480, 272), paste=BYSTANDER),
    F.Shot(F.HAM, list(range(120, 136)), F._full(640, 360)),
    F.Shot(F.GIF, list(range(12, 24)), F._full(480, 272), paste=BYSTANDER),
    F.Shot(F.HAM, list(range(151, 167)), F._full(640, 360)),
]


@pytest.fixture(scope="module")
def sources():
    """The source faces of the shots, detected on every frame and tracked (bench/film_identity.py's
    survey on just these frames), and who they are, checked by descriptor."""
    models = F.Models()
    gif, _ = F.survey_video(MEDIA / "videos" / F.GIF, models, keep=set(range(24)))
    ham, _ = F.survey_video(MEDIA / "videos" / F.HAM, models, keep=set(range(120, 136)) | set(range(151, 167)))
    friends = F.survey_photo(MEDIA / "photos" / F.FRIENDS, models)
    # the GIF shows one face (Musk), those Hamilton frames one (the singer): every track of a source
    # is one person, and the two are two people (by descriptor: within / beyond dlib's 0.6)
    assert gif and ham and len(friends) == 6
    for a, b in itertools.combinations([t for t in gif + ham if t.mean is not None], 2):
        same = a.source == b.source
        assert (F.descriptor_distance(a.mean, b.mean) < 0.6) == same, (a.source, b.source)
    # the trap: the blurred copy's descriptor lies within 0.6 of the singer's (and the copy is not trusted)
    canvas = np.zeros((360, 640, 3), np.uint8)
    source = F._source_frames(MEDIA, {F.FRIENDS: {0}})[F.FRIENDS, 0]
    box = F._paste(canvas, source, friends[0].boxes[0], BYSTANDER)
    singer = np.mean([t.mean for t in ham if t.mean is not None], axis=0)
    copy = F.SourceTrack("copy", 0, {})
    models.describe(copy, canvas[:, :, ::-1].copy(), 0, box)
    chip = copy.chips[0][1]
    assert not copy.descriptors, "the copy should not be trusted"
    assert F.descriptor_distance(models.descriptor([chip])[0], singer) < 0.6
    return {"tracks": {F.GIF: gif, F.HAM: ham, F.FRIENDS: friends}}, {
        F.GIF: {t.track_id: "musk" for t in gif}, F.HAM: {t.track_id: "miranda" for t in ham},
        F.FRIENDS: F.SOURCE_PEOPLE[F.FRIENDS]}


@needs_media
def test_cut_back_and_forth_with_a_blurred_bystander_holds_each_identity(tmp_path, sources):
    found, people = sources
    truth = F.build("dinner", SHOTS, found, MEDIA, tmp_path / "clips", people)
    assert truth["cuts"] == [12, 28, 40]
    assert sum(p == "schwimmer" for faces in truth["frames"] for p, _, _ in faces) == 24
    manifest = F.run_preprocess(truth["path"], tmp_path / "out")
    score = F.score("dinner", manifest, truth)
    assert manifest["cuts"] == truth["cuts"]
    for i in score.ids:
        assert i["purity"] >= 0.98, score.ids
        assert i["majority"] != F.NO_FACE, score.ids
    by_person = {p["person"]: p for p in score.people}
    for speaker in ("musk", "miranda"):
        assert by_person[speaker]["main"] and by_person[speaker]["coverage"] >= 0.9, score.people
    speakers = {by_person["musk"]["best"], by_person["miranda"]["best"]}
    assert len(speakers) == 2
    assert by_person["schwimmer"]["pasted_ids"], "the bystander was not found"
    assert not set(by_person["schwimmer"]["pasted_ids"]) & speakers, "the bystander was joined to a speaker"
    # the bystander's tracks say why they were not joined across the cut: too small or blurred to trust
    held = {t["id"]: t for t in manifest["tracks"]}
    for pid in by_person["schwimmer"]["pasted_ids"]:
        person = next(p for p in manifest["people"] if p["id"] == pid)
        assert all(held[t]["identity"].startswith("no face trusted") for t in person["tracks"])


def test_an_extreme_close_up_is_a_face_when_its_faces_are_trusted():
    # bench/film_identity.py's "extreme" clip: a face enlarged until its box (373-414 px) is taller
    # than the 360-pixel frame was screened out as a false face; a trusted face is a face at any size
    from sse.faces.boxes import Box
    from sse.faces.identity import ChipSampler
    from sse.faces.people import screen_tracks
    from sse.faces.quality import FaceQuality
    from sse.faces.track import Track

    def track(track_id, quality):
        boxes = {i: Box(120, -20, 520, 380) for i in range(10)}
        sampler = ChipSampler(4)
        sampler.add(0, lambda: np.zeros((1, 1, 3), np.uint8), lambda chip: quality)
        return Track(track_id, boxes, {i: "detected" for i in boxes}), sampler

    close_up, close_sampler = track(0, FaceQuality(size=400, sharpness=0.2, yaw=5, fit=0.05))
    blurred, blurred_sampler = track(1, FaceQuality(size=400, sharpness=0.01, yaw=5, fit=0.05))
    kept, left_out = screen_tracks([close_up], {0: close_sampler}, (640, 360))
    assert [t.track_id for t in kept] == [0] and not left_out
    kept, left_out = screen_tracks([blurred], {1: blurred_sampler}, (640, 360))
    assert not kept and left_out[1] == "false face: a 400 px face in a 640x360 frame"
