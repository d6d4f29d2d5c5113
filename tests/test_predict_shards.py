"""sse-predict split into shares (``--shard K/N``): each share writes its videos' folders only, and the
same command run once as one process afterwards writes the run's files; every file equals what one
plain run writes (JSON but for the times it records)."""
from __future__ import annotations

import shutil

from sse.predict.cli import main
from test_faces_shards import output_files
from test_predict_cli import media, tiny  # noqa: F401 (fixtures)


def test_two_shares_then_one_run_equal_one_run(media, tiny, tmp_path, capsys):  # noqa: F811
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(media / "videos" / "elon-musk-smoke.gif", inputs / "talk.gif")
    shutil.copy(media / "photos" / "face_recognition_two_people.jpg", inputs / "two.jpg")
    common = [str(inputs / "talk.gif"), str(inputs / "two.jpg"), "--model", *map(str, tiny),
              "--stride", "5", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "whole")]) == 0
    for k in range(2):
        assert main(common + ["--out", str(tmp_path / "sharded"), "--shard", f"{k}/2"]) == 0
        assert f"shard {k}/2 (--shard)" in capsys.readouterr().out
    assert not (tmp_path / "sharded" / "predictions.csv").exists()
    assert not (tmp_path / "sharded" / "faces" / "list.txt").exists()
    assert main(common + ["--out", str(tmp_path / "sharded")]) == 0
    expected, got = output_files(tmp_path / "whole"), output_files(tmp_path / "sharded")
    assert sorted(got) == sorted(expected)
    assert len(got["predictions.csv"].splitlines()) > 8
    for name in expected:
        assert got[name] == expected[name], name


def test_a_bad_shard_is_a_one_line_error(tiny, tmp_path, capsys):  # noqa: F811
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--model", *map(str, tiny),
                 "--shard", "2/2"]) == 1
    assert "--shard 2/2: K must be in 0..N-1" in capsys.readouterr().err
