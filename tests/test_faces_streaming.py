"""The face pipeline in bounded memory (issue 21): the manifest written and read one frame entry at
a time with the bytes json.dumps gives, tracks described as soon as they end (their chips dropped),
people's records held for their span only."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from conftest import DATA
from sse.faces import identity, pipeline
from sse.faces.inputs import VideoJob
from sse.faces.jsonstream import read_object, scan_object, write_object
from sse.faces.pipeline import FaceModels, FrameRecord, PersonRecords, PipelineConfig, analyse
from sse.faces.video import iter_frames, process_video, read_manifest

VIDEOS = DATA / "media" / "videos"
needs_media = pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"real data not found at {VIDEOS}")


def _scan(path, key, block):
    items, scan = [], scan_object(path, key, block)
    while True:
        try:
            items.append(next(scan))
        except StopIteration as stop:
            return items, stop.value


@pytest.mark.parametrize("count", [0, 1, 23])
def test_a_streamed_manifest_is_the_json_dumps_text_and_reads_back_at_any_window(tmp_path, count):
    rng = random.Random(count)
    frames = [{"index": i, "person": rng.choice([None, 1, 12]), "status": "tracked",
               "box": [round(rng.uniform(0, 600), 1) for _ in range(4)],
               "landmarks": [[round(rng.uniform(0, 600), 1), 1e-7] for _ in range(68)] if i % 3 else None,
               "pose": {"yaw": -1.25, "note": 'a "quoted"\nline \u00e9\u2603'}, "crop": f"p1/{i:06d}.png"}
              for i in range(count)]
    manifest = {"format": "sse.faces.manifest/2", "video": "v\"x", "frames": frames, "seconds": 12,
                "complete": True, "empty": {}, "list": [], "none": None}
    path = tmp_path / "manifest.json"
    write_object(path, {**manifest, "frames": iter(frames)}, "frames")  # any iterable, made as written
    assert path.read_text() == json.dumps(manifest, indent=1) + "\n"
    rest = {k: v for k, v in manifest.items() if k != "frames"}
    for block in (1, 2, 7, 64, 1 << 20):
        assert _scan(path, "frames", block) == (frames, rest)
        assert read_object(path, "frames", block) == rest
    assert read_manifest(tmp_path, frames=False) == rest
    assert list(iter_frames(tmp_path)) == frames
    assert read_manifest(tmp_path) == manifest


def test_a_damaged_manifest_is_no_manifest(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"complete": true, "frames": [{"index": 1}, {"ind')
    assert read_manifest(tmp_path, frames=False) is None and read_manifest(tmp_path) is None
    path.write_text('{"frames": [], "complete": true} trailing')
    assert read_manifest(tmp_path, frames=False) is None


def test_a_person_holds_records_for_its_span_only():
    indices = list(range(0, 20, 2))
    span = [FrameRecord(i, "detected" if i in (6, 10) else "none", person=3) for i in (6, 8, 10)]
    for r in (span[0], span[2]):
        r.landmarks = np.zeros((68, 2), np.float32)
    person = PersonRecords(3, [0], 1.0, span, "", indices, {14})
    assert person.span() is span
    records = person.records
    assert [r.index for r in records] == indices and records[3:6] == span
    assert [r.status for r in records] == ["none"] * 3 + ["detected", "none", "detected", "none", "undecodable",
                                                          "none", "none"]
    assert all(r.person == 3 for r in records)
    whole = PersonRecords(3, [0], 1.0, records)  # every record given: the span is cut from them
    assert whole.span() == span and [r.index for r in whole.records] == indices
    assert person.as_dict()["first"] == 6 and person.as_dict()["last"] == 10 and person.as_dict()["frames"] == 2


@pytest.fixture(scope="module")
def models():
    return FaceModels.load(PipelineConfig())


@needs_media
def test_tracks_are_described_when_they_end_and_their_chips_dropped(models, monkeypatch):
    """The clip has shot cuts: tracks end before the last frame; each is described then and its
    chips (150x150 images) dropped, so the chips of every track are never held at once."""
    samplers: list[identity.ChipSampler] = []
    log: list[tuple[int, int, int]] = []  # (frames read, chips of this track, chips held then)
    read = [0]

    class Counted(identity.ChipSampler):
        def __init__(self, capacity):
            super().__init__(capacity)
            samplers.append(self)

        def release(self):
            log.append((read[0], len(self.chips), sum(len(s.chips) for s in samplers)))
            super().release()

    frames = pipeline.MediaReader.frames

    def counting(self):
        for frame in frames(self):
            read[0] += 1
            yield frame

    monkeypatch.setattr(pipeline, "ChipSampler", Counted)
    monkeypatch.setattr(pipeline.MediaReader, "frames", counting)
    analysis = analyse(VIDEOS / "short_hamilton_clip.mp4", PipelineConfig(faces="all"), models)
    total = read[0]
    assert len(log) == len(samplers) >= 3 and all(not s.chips for s in samplers)
    assert sum(1 for at, _, _ in log if at < total) >= 2, "tracks released before the clip's end"
    assert max(held for _, _, held in log) < sum(chips for _, chips, _ in log)
    assert len(analysis.people) >= 2


@needs_media
def test_process_video_returns_the_entries_it_wrote(models, tmp_path):
    clip = VIDEOS / "elon-musk-smoke.gif"
    job = VideoJob("smoke", clip, None)
    manifest = process_video(job, tmp_path, PipelineConfig(faces="all"), models)
    written = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    frames = list(manifest["frames"])
    assert len(manifest["frames"]) == len(frames) and manifest["frames"][0] == frames[0]
    assert written == {**manifest, "frames": frames}
    assert sum(1 for f in frames if f["crop"]) == manifest["crops"] > 0
    assert all((tmp_path / "smoke" / f["crop"]).is_file() for f in frames if f["crop"])
