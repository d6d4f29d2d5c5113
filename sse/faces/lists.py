"""List files for the rest of the toolkit, rebuilt from the manifests after every batch.

DIR/list.txt: one line `<video id>/<crop> <label>` per crop of every video whose status is 'ok',
paths relative to DIR (give DIR as convert_imageset's root folder or ImageData's root_folder),
label = class index in Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise order, -1 if unknown.

DIR/frames.csv: the frame -> video map the fusion step reads; a header line
`crop,video,frame,label,status`, then one row per line of list.txt, in the same order: the crop path
as in list.txt, the video id, the frame index in the source video, the label (-1 if unknown) and the
frame status (detected, tracked, interpolated).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from . import atomic

LIST_FILE = "list.txt"
FRAMES_FILE = "frames.csv"
FRAMES_HEADER = ("crop", "video", "frame", "label", "status")


def crop_rows(manifests: list[dict]) -> list[tuple[str, str, int, int, str]]:
    """(crop path, video id, frame index, label, status) for every crop of the 'ok' videos."""
    rows = []
    for manifest in manifests:
        if manifest.get("status") != "ok":
            continue
        label = manifest["label"] if manifest.get("label") is not None else -1
        for frame in manifest["frames"]:
            if frame.get("crop"):
                path = f"{manifest['video']}/{frame['crop']}"
                rows.append((path, manifest["video"], frame["index"], label, frame["status"]))
    return rows


def write_lists(out_dir: Path, manifests: list[dict]) -> int:
    """Write list.txt and frames.csv atomically; returns the number of crops listed."""
    rows = crop_rows(manifests)
    atomic.write_text(Path(out_dir) / LIST_FILE, "".join(f"{path} {label}\n" for path, _, _, label, _ in rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FRAMES_HEADER)
    writer.writerows(rows)
    atomic.write_text(Path(out_dir) / FRAMES_FILE, buffer.getvalue())
    return len(rows)
