"""Small pieces of the face pipeline checked by hand-made cases."""

from pathlib import Path

import numpy as np
import pytest

from sse.classes import class_index
from sse.faces.align import apply_affine, fit_similarity
from sse.faces.boxes import Box
from sse.faces.contact import pick_evenly
from sse.faces.errors import FacesError, InputNotFoundError, LabelError
from sse.faces.face_model import MEAN_SHAPE, MIRROR, MODEL_3D
from sse.faces.inputs import discover, label_from_path, read_label_csv
from sse.faces.pipeline import FrameRecord, interpolate_gaps
from sse.faces.people import Fragment, LinkConfig, link_people


def test_box_iou_of_half_overlapping_squares():
    assert Box(0, 0, 10, 10).iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert Box(0, 0, 10, 10).iou(Box(20, 20, 30, 30)) == 0.0


def test_similarity_fit_recovers_a_known_transform():
    angle, scale, shift = np.radians(20), 1.7, np.array([3.0, -4.0])
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(1).normal(size=(10, 2))
    matrix = fit_similarity(src, src @ linear.T + shift)
    np.testing.assert_allclose(matrix, np.column_stack([linear, shift]), atol=1e-12)
    np.testing.assert_allclose(apply_affine(matrix, src), src @ linear.T + shift, atol=1e-12)


def test_mean_shape_is_mirror_symmetric_and_model_faces_the_camera():
    mirrored = MEAN_SHAPE[MIRROR] * [-1, 1]
    np.testing.assert_allclose(mirrored, MEAN_SHAPE, atol=1e-3)
    assert MODEL_3D[30, 2] == MODEL_3D[:, 2].min()  # the nose tip is nearest the camera
    assert (MODEL_3D[[0, 16], 2] > MODEL_3D[[36, 45], 2]).all()  # the jaw ends lie behind the eyes


def _fragment(track_id, frames, x):
    return Fragment(track_id, {i: Box(x, 0, x + 10, 10) for i in frames}, {i: "tracked" for i in frames})


def test_fragments_without_descriptors_link_only_in_place():
    first, later, elsewhere = _fragment(0, range(0, 10), 0), _fragment(1, range(13, 20), 1), _fragment(2, range(12, 30), 50)
    people = link_people([first, later, elsewhere], [], LinkConfig(link_gap=5))
    assert sorted(p.track_ids for p in people) == [[0, 1], [2]]
    assert len(next(p for p in people if p.track_ids == [0, 1]).boxes) == 17
    across_cut = link_people([first, later], [12], LinkConfig(link_gap=5))
    assert len(across_cut) == 2, "a cut between two fragments: position alone does not link them"


def test_short_gaps_are_interpolated_and_long_ones_left_empty():
    records = [FrameRecord(i) for i in range(12)]
    for i in (0, 3, 11):
        records[i].status = "detected"
        records[i].box = Box(i, 0, i + 10, 10)
        records[i].landmarks = np.full((68, 2), float(i))
    interpolate_gaps(records, max_gap=2)
    assert [r.status for r in records[:4]] == ["detected", "interpolated", "interpolated", "detected"]
    assert records[1].landmarks[0, 0] == pytest.approx(1.0)
    assert records[1].box.left == pytest.approx(1.0)
    assert all(r.status == "none" for r in records[4:11])


def test_labels_from_afew_folders_case_insensitive():
    assert label_from_path(Path("AFEW/Train/Angry/001.avi")) == 0
    assert label_from_path(Path("afew/val/SURPRISE/x.avi")) == 6
    assert label_from_path(Path("AFEW/Val/Neutral/frames/0001.png")) == 4
    assert label_from_path(Path("clips/x.avi")) is None


def test_label_csv_errors_name_file_and_line(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("video,label\na,Happy\nb,4\n")
    assert read_label_csv(good) == {"a": 3, "b": 4}
    bad = tmp_path / "bad.csv"
    bad.write_text("a,Happy\nb,Joyful-ish\n")
    with pytest.raises(LabelError, match=r"bad.csv:2"):
        read_label_csv(bad)


def test_discover_ids_and_clear_errors(tmp_path):
    (tmp_path / "Train" / "Sad").mkdir(parents=True)
    (tmp_path / "Train" / "Sad" / "v1.avi").write_bytes(b"")
    seq = tmp_path / "Train" / "Happy" / "seq1"
    seq.mkdir(parents=True)
    (seq / "0001.png").write_bytes(b"")
    jobs = discover([tmp_path / "Train"])
    assert [(j.video_id, j.label) for j in jobs] == [("Train/Happy/seq1", 3), ("Train/Sad/v1", 5)]
    with pytest.raises(InputNotFoundError, match="input not found"):
        discover([tmp_path / "missing"])
    with pytest.raises(FacesError, match="same output folder"):
        discover([tmp_path / "Train" / "Sad" / "v1.avi", tmp_path / "Train" / "Sad" / "v1.avi"])


def test_pick_evenly_spreads_over_the_range():
    assert pick_evenly(5, 10) == [0, 1, 2, 3, 4]
    picked = pick_evenly(100, 5)
    assert picked[0] == 0 and picked[-1] == 99 and len(picked) == 5


def test_symlinked_clips_keep_their_place_and_class_folder_in_the_tree(tmp_path):
    elsewhere = tmp_path / "store" / "clip0042.avi"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"not decoded here")
    happy = tmp_path / "AFEW" / "Train" / "Happy"
    happy.mkdir(parents=True)
    (happy / "0042.avi").symlink_to(elsewhere)
    jobs = discover([tmp_path / "AFEW" / "Train"])
    assert [(j.video_id, j.label) for j in jobs] == [("Train/Happy/0042", class_index("Happy"))]
