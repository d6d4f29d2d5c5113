"""sse.predict.predict: the whole path from Python returns sse-predict's own tables and draws a
person's timeline."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import caffe
from conftest import DATA
from sse.classes import CLASS_NAMES
from sse.predict import Predictions, predict

DEPLOY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 24 dim: 24 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 7 weight_filler { type: "gaussian" std: 0.002 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@pytest.fixture()
def model(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "deploy.prototxt").write_text(DEPLOY)
    caffe.set_random_seed(1)
    caffe.Net(str(folder / "deploy.prototxt"), caffe.TEST).save(str(folder / "model.caffemodel"))
    (folder / "model.json").write_text(json.dumps({"input_size": 24, "channels": 1, "mean_value": [120.0]}))
    return folder


def test_predict_returns_the_csv_rows_and_the_people_of_the_run(model, tmp_path):
    clip = DATA / "media" / "videos" / "short_hamilton_clip.mp4"
    if not clip.is_file():
        pytest.skip(f"real media not found at {clip}")
    out = tmp_path / "out"
    result = predict(clip, out=out, models=[model], options=["--stride", "10"])
    assert isinstance(result, Predictions) and result.primary == "tiny"
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(result.frames) == len(rows) > 0
    np.testing.assert_allclose(result.frames[list(CLASS_NAMES)].to_numpy(),
                               [[float(r[c]) for c in CLASS_NAMES] for r in rows])
    summary = json.loads((out / "summary.json").read_text())
    people = [p for v in summary["videos"] for p in v["people"]]
    assert result.people["person"].tolist() == [p["person"] for p in people]
    assert result.people["dominant"].tolist() == [p["dominant"] for p in people]
    figure = result.timeline(person=int(result.people["person"].iloc[0]))
    assert figure.axes and figure.axes[0].get_lines()
    with pytest.raises(ValueError, match="no frames of person 99"):
        result.timeline(person=99)


def test_the_run_report_names_the_tracks_left_out_of_people_and_how_folders_were_read():
    from pathlib import Path

    from sse.predict.cli import LEFT_OUT_LINES, report

    left = [{"video": "talk", "track": k, "first": k, "last": k + 5, "reason": "false face: a 4 px face"}
            for k in range(LEFT_OUT_LINES + 3)]
    text = report([], [], 0, 1.0, Path("out"), left, ["image folder DCIM read as 6 photos (8 of 8 pairs differ)"])
    assert "  image folder DCIM read as 6 photos" in text
    assert "left out of people: talk track 0 (frames 0-5): false face: a 4 px face" in text
    assert f"... and 3 more tracks left out" in text and text.count("left out of people") == LEFT_OUT_LINES
