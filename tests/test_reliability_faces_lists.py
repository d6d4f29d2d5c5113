"""sse-preprocess into an --out that an earlier run filled: list.txt, frames.csv and videos.txt
cover the videos of both runs (every finished manifest), not only this run's."""
from __future__ import annotations

import json

from sse.faces.cli import main
from test_faces_cli_batch import write_faceless_video


def test_second_run_into_the_same_out_lists_the_first_runs_videos_too(tmp_path):
    out = tmp_path / "faces"
    earlier = out / "Happy" / "first"
    earlier.mkdir(parents=True)
    frames = [{"index": i, "person": 1, "status": "detected", "crop": f"{i:06d}.png"} for i in (0, 3)]
    (earlier / "manifest.json").write_text(json.dumps(
        {"video": "Happy/first", "label": 3, "status": "ok", "settings": {"faces": "target"},
         "fps": 25.0, "frames": frames, "complete": True}))
    clips = tmp_path / "clips" / "Sad"
    clips.mkdir(parents=True)
    write_faceless_video(clips / "second.avi", frames=6)
    assert main([str(tmp_path / "clips"), "--out", str(out), "--no-progress", "--stride", "3"]) == 0
    assert (out / "list.txt").read_text().splitlines() == ["Happy/first/000000.png 3",
                                                           "Happy/first/000003.png 3"]
    videos = (out / "videos.txt").read_text().split()
    assert "Happy/first" in videos
