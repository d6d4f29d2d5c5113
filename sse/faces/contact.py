"""Contact sheet: a grid of a video's crops, each labelled with its frame index and status, for a
quick look at what the pipeline kept (green: detected, blue: tracked, orange: interpolated)."""

from __future__ import annotations

import cv2
import numpy as np

STATUS_COLOURS = {"detected": (0, 180, 0), "tracked": (200, 120, 0), "interpolated": (0, 140, 255)}


def pick_evenly(count: int, limit: int) -> list[int]:
    """Up to `limit` positions spread evenly over range(count)."""
    if count <= limit:
        return list(range(count))
    return sorted({int(round(i * (count - 1) / (limit - 1))) for i in range(limit)})


def contact_sheet(tiles: list[tuple[np.ndarray, int, str]], columns: int = 8) -> np.ndarray:
    """Grid image of (crop, frame index, status) tiles, BGR uint8."""
    if not tiles:
        raise ValueError("contact sheet needs at least one crop")
    size = tiles[0][0].shape[0]
    border, caption = 2, 14
    cell_w, cell_h = size + 2 * border, size + 2 * border + caption
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * cell_h, min(columns, len(tiles)) * cell_w, 3), 255, np.uint8)
    for k, (crop, index, status) in enumerate(tiles):
        y, x = (k // columns) * cell_h, (k % columns) * cell_w
        tile = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR) if crop.ndim == 2 else crop
        sheet[y : y + size + 2 * border, x : x + cell_w] = STATUS_COLOURS.get(status, (128, 128, 128))
        sheet[y + border : y + border + size, x + border : x + border + size] = tile
        cv2.putText(sheet, f"{index} {status[:3]}", (x + 3, y + cell_h - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    return sheet
