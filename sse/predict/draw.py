"""Pictures of predictions: a face's box with its label and probability bars (drawn on video frames
and photos), the annotated contact sheet of a person's crops."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from sse.classes import CLASS_NAMES

# One BGR colour per class, in CLASS_NAMES order (matplotlib's tab10, as the timelines use).
CLASS_COLOURS = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
                 (75, 86, 140), (194, 119, 227))
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_bars(image: np.ndarray, probs: Sequence[float], x: int, y: int, width: int, row: int) -> None:
    """Seven horizontal bars (class initial + bar) with their top-left corner at (x, y), in place."""
    for c, p in enumerate(probs):
        top = y + c * row
        cv2.rectangle(image, (x, top), (x + width, top + row - 2), (255, 255, 255), -1)
        cv2.rectangle(image, (x, top), (x + int(round(width * float(p))), top + row - 2), CLASS_COLOURS[c], -1)
        cv2.putText(image, CLASS_NAMES[c][:2], (x + 2, top + row - 3), FONT, max(0.25, row / 30), (0, 0, 0), 1)


def annotate_face(image: np.ndarray, box: Sequence[float], probs: Sequence[float], caption: str) -> None:
    """Box coloured by the predicted class, ``caption`` above it, the bars beside it, in place."""
    h, w = image.shape[:2]
    left, top, right, bottom = (int(round(v)) for v in box)
    winner = int(np.argmax(probs))
    colour = CLASS_COLOURS[winner]
    thick = max(1, w // 400)
    cv2.rectangle(image, (left, top), (right, bottom), colour, thick)
    scale = max(0.4, w / 1600)
    text = f"{caption} {CLASS_NAMES[winner]} {float(probs[winner]):.2f}"
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, thick)
    ty = max(th + 4, top - 4)
    cv2.rectangle(image, (left, ty - th - 4), (left + tw + 4, ty + 2), colour, -1)
    cv2.putText(image, text, (left + 2, ty - 2), FONT, scale, (255, 255, 255), thick)
    row = max(8, (bottom - top) // 7)
    bar_w = max(40, (right - left) // 2)
    x = right + 4 if right + 4 + bar_w <= w else max(0, left - 4 - bar_w)
    draw_bars(image, probs, x, max(0, min(top, h - 7 * row)), bar_w, row)


def sheet(tiles: Sequence[tuple[np.ndarray, str, Sequence[float]]], columns: int = 8) -> np.ndarray:
    """Grid of (crop, caption, probabilities) tiles: the crop framed in its predicted class's
    colour, the caption and the predicted class under it, the bars below; BGR uint8."""
    if not tiles:
        raise ValueError("a sheet needs at least one crop")
    size = 96
    border, caption_h, bars_h = 3, 28, 7 * 6
    cell_w, cell_h = size + 2 * border, size + 2 * border + caption_h + bars_h
    rows = (len(tiles) + columns - 1) // columns
    out = np.full((rows * cell_h, min(columns, len(tiles)) * cell_w, 3), 255, np.uint8)
    for k, (crop, caption, probs) in enumerate(tiles):
        y, x = (k // columns) * cell_h, (k % columns) * cell_w
        tile = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR) if crop.ndim == 2 else crop
        tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
        winner = int(np.argmax(probs))
        out[y:y + size + 2 * border, x:x + cell_w] = CLASS_COLOURS[winner]
        out[y + border:y + border + size, x + border:x + border + size] = tile
        base = y + size + 2 * border
        cv2.putText(out, caption, (x + 2, base + 11), FONT, 0.35, (0, 0, 0), 1)
        cv2.putText(out, f"{CLASS_NAMES[winner]} {float(probs[winner]):.2f}", (x + 2, base + 24), FONT, 0.38,
                    (0, 0, 0), 1)
        draw_bars(out, probs, x + 2, base + caption_h, cell_w - 4, 6)
    return out
