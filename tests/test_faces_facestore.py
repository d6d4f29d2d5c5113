"""The compact per-face store of pass 1 (issue 21): exact round trips, and the memory held per face."""

import tracemalloc

import numpy as np
import pytest

from sse.faces import facestore
from sse.faces.boxes import Box
from sse.faces.facestore import FaceStore
from sse.faces.frontalize import Pose
from sse.faces.pipeline import FrameRecord, interpolate_gaps


def _points(rng: np.random.Generator) -> np.ndarray:
    return (rng.random((68, 2)) * 640).astype(np.float32)


def test_rows_round_trip_buffered_and_written(monkeypatch):
    monkeypatch.setattr(facestore, "FLUSH_BYTES", 3 * 544)  # a write every 3 rows
    rng = np.random.default_rng(0)
    store = FaceStore()
    points = [_points(rng) for _ in range(10)]
    rows = [store.add(p) for p in points]
    assert rows == list(range(10)) and len(store) == 10
    assert store._written == 9  # rows 0-8 in the file, row 9 still buffered
    for row, p in zip(rows, points):
        got = store.landmarks(row)
        assert got.dtype == np.float32 and got.shape == (68, 2) and np.array_equal(got, p)
        got[0, 0] = -1  # a copy: the store is not changed
    assert np.array_equal(store.landmarks(3), points[3])
    with pytest.raises(IndexError):
        store.landmarks(10)
    with pytest.raises(ValueError):
        store.add(points[0].astype(np.float64))
    store.close()


def test_poses_round_trip_exactly():
    store = FaceStore()
    rng = np.random.default_rng(1)
    rows = [store.add(_points(rng)) for _ in range(facestore.BLOCK + 3)]
    poses = {r: Pose(float(rng.normal()) * 30, 1 / 3, -0.1, "left" if r % 2 else "right", 1e-3 * r) for r in rows[::7]}
    for r, pose in poses.items():
        store.set_pose(r, pose)
    for r in rows:
        assert store.pose(r) == poses.get(r)
    store.clear_pose(rows[7])
    assert store.pose(rows[7]) is None


def test_records_with_a_store_equal_plain_records():
    """Interpolation, poses and manifest entries come out the same with and without the store."""
    rng = np.random.default_rng(2)
    store = FaceStore()
    plain = [FrameRecord(i, person=1) for i in range(8)]
    stored = [FrameRecord(i, person=1, store=store) for i in range(8)]
    for i in (0, 4, 7):
        points = _points(rng)
        for records in (plain, stored):
            records[i].status, records[i].box = "detected", Box(i, 2.5, i + 40.25, 42)
        plain[i].landmarks = points
        stored[i].attach(store, store.add(points))
    interpolate_gaps(plain, 3)
    interpolate_gaps(stored, 3)
    for k, (a, b) in enumerate(zip(plain, stored)):
        if a.landmarks is not None:
            a.pose = b.pose = Pose(k * 1.5, -k / 7, 0.25, "left", k / 9)
        assert b.has_landmarks == (a.landmarks is not None)
        assert a == b and a.as_dict() == b.as_dict()
        assert isinstance(b._face, (int, type(None)))  # the stored record holds a row, not an array
    assert len(store) == 3 + 3 + 2  # detected faces and the interpolated ones


def _held_per_face(store: FaceStore | None, count: int) -> float:
    rng = np.random.default_rng(3)
    points = [_points(rng) for _ in range(64)]
    pose = Pose(12.5, -3.25, 1.0, "left", 0.75)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    records = []
    for i in range(count):
        record = FrameRecord(i, "tracked", person=1, store=store)
        record.landmarks = points[i % 64].copy()  # a fresh array per face, as the landmark predictor gives
        record.pose = Pose(pose.yaw + i, pose.pitch, pose.roll, pose.occluded_side, pose.reprojection_error)
        records.append(record)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(records) == count
    return held / count


def test_memory_held_per_face_is_bounded():
    """A record with its landmarks and pose in the store holds at most 300 bytes a face in memory
    (the record, its row and the pose's 33 bytes; the landmarks are in the temporary file), against
    about 0.9 KB with the landmarks array and the Pose object in the record."""
    count = 20000
    compact = _held_per_face(FaceStore(), count)
    objects = _held_per_face(None, count)
    assert compact < 300, f"{compact:.0f} B a face"
    assert objects > 700, f"{objects:.0f} B a face"  # what the measurement would see without the store
