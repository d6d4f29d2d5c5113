"""EmotiW prediction files, video/frame/label lists and matrix files are read and written exactly."""

import h5py
import numpy as np
import pytest
import scipy.io

from sse.fusion.errors import FusionError
from sse.fusion.featdb import save_mat
from sse.fusion.formats import (format_predictions, read_frame_list, read_labels, read_matrix,
                                read_predictions, read_video_list, video_key, write_predictions)

from conftest import SUBMISSION


@pytest.mark.parametrize("name", ["1_sse_resnet_model_predictions.txt", "4_relationlet_model_predictions.txt",
                                  "5_audio_model_predictions.txt", "ensemble_model_predictions.txt"])
def test_real_submission_file_rewrites_byte_for_byte(tmp_path, name):
    scores = read_predictions(SUBMISSION / name)
    assert scores.shape == (653, 7)
    write_predictions(tmp_path / name, scores)
    assert (tmp_path / name).read_bytes() == (SUBMISSION / name).read_bytes()


def test_real_video_list_has_653_unique_avi_names():
    videos = read_video_list(SUBMISSION / "test_video_list_emotiw2017.txt")
    assert len(videos) == 653 and videos[0] == "000029320.avi"


def test_wrong_score_count_names_file_and_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("0.1 0.1 0.1 0.1 0.1 0.1 0.4\n0.5 0.5\n")
    with pytest.raises(FusionError, match=r"p\.txt:2: expected 7 scores, found 2"):
        read_predictions(path)


def test_nan_score_names_file_and_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("0.1 0.1 0.1 0.1 0.1 0.1 0.4\n0.1 nan 0.1 0.1 0.1 0.1 0.5\n")
    with pytest.raises(FusionError, match=r"p\.txt:2: NaN"):
        read_predictions(path)


def test_writing_nan_is_refused(tmp_path):
    with pytest.raises(FusionError, match="row 2"):
        format_predictions(np.array([[0.5, 0.5], [np.nan, 1.0]]))
    assert not (tmp_path / "x.txt").exists()


def test_prediction_format_is_percent_5g_with_single_spaces():
    text = format_predictions(np.array([[0.312494, 5.98071e-4, 1.07514e-10, 1.0, 0.0, -0.17333, 0.5]]))
    assert text == "0.31249 0.00059807 1.0751e-10 1 0 -0.17333 0.5\n"


def test_repeated_video_in_list_is_an_error(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("a.avi\nb.avi\na.avi\n")
    with pytest.raises(FusionError, match=r"v\.txt:3: video 'a\.avi' already listed on line 1"):
        read_video_list(path)


def test_frame_list_splits_on_last_whitespace_and_skips_comments(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("# frame video\nfaces/my clip/0001.png clip1\n\nfaces/b/0001.png clip2\n")
    frames = read_frame_list(path)
    assert frames.frames == ("faces/my clip/0001.png", "faces/b/0001.png")
    assert frames.videos == ("clip1", "clip2") and frames.line_numbers == (2, 4)


def test_video_key_drops_folder_and_extension():
    assert video_key("test/000029320.avi") == video_key("000029320") == "000029320"


def test_labels_by_name_index_and_other_dataset_order(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a.avi happiness\nb.avi 4\nc.avi Surprise\n")
    names, labels = read_labels(path, ["c.avi", "a.avi", "b.avi"])
    assert names == ["c.avi", "a.avi", "b.avi"] and labels.tolist() == [6, 3, 4]
    _, fer = read_labels(path, label_order="fer2013")
    assert fer.tolist() == [3, 5, 6]  # FER2013 label 4 is Sad


def test_label_for_unlisted_video_and_missing_label_are_errors(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a.avi Angry\nz.avi Fear\n")
    with pytest.raises(FusionError, match=r"l\.txt:2: video 'z\.avi' is not in the video list"):
        read_labels(path, ["a.avi", "b.avi", "z2.avi"])
    path.write_text("a.avi Angry\n")
    with pytest.raises(FusionError, match=r"no label for video 'b\.avi'"):
        read_labels(path, ["a.avi", "b.avi"])
    path.write_text("a.avi Contempt\n")
    with pytest.raises(FusionError, match=r"l\.txt:1: unknown emotion class 'Contempt'"):
        read_labels(path)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_read_matrix_from_mat_files_of_both_versions(tmp_path, version):
    matrix = np.arange(21, dtype=np.float64).reshape(3, 7)
    save_mat(tmp_path / "m.mat", {"feats": matrix}, version)
    np.testing.assert_array_equal(read_matrix(tmp_path / "m.mat"), matrix)


def test_read_matrix_chooses_variable_and_reports_missing_one(tmp_path):
    scipy.io.savemat(tmp_path / "m.mat", {"a": np.ones((2, 7)), "b": np.zeros((3, 7))})
    assert read_matrix(tmp_path / "m.mat", "b").shape == (3, 7)
    with pytest.raises(FusionError, match="several variables"):
        read_matrix(tmp_path / "m.mat")
    with pytest.raises(FusionError, match="no variable 'feats'"):
        read_matrix(tmp_path / "m.mat", "feats")
    np.save(tmp_path / "m.npy", np.ones(7))
    with pytest.raises(FusionError, match="2-D"):
        read_matrix(tmp_path / "m.npy")


def test_v73_file_has_matlab_header_and_column_major_layout(tmp_path):
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_mat(tmp_path / "m.mat", {"feats": matrix}, "7.3")
    head = (tmp_path / "m.mat").read_bytes()[:512]
    assert head.startswith(b"MATLAB 7.3 MAT-file") and head[124:128] == b"\x00\x02IM"
    with h5py.File(tmp_path / "m.mat", "r") as f:
        assert f["feats"].shape == (3, 2) and f["feats"].attrs["MATLAB_class"] == b"single"


def test_frame_list_reads_the_face_pipelines_frames_csv(tmp_path):
    from sse.fusion.formats import read_frame_list
    path = tmp_path / "frames.csv"
    path.write_text("crop,video,frame,label,status\nclipA/000001.png,clipA,1,3,detected\n"
                    "clipA/000002.png,clipA,2,3,tracked\nclip B/000001.png,clip B,1,-1,detected\n")
    frames = read_frame_list(path)
    assert frames.videos == ("clipA", "clipA", "clip B")
    assert frames.frames[2] == "clip B/000001.png"
    assert frames.line_numbers == (2, 3, 4)
