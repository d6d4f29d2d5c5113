"""Videos shot on phones carry a rotation in their track header; both decoders must hand the face
pipeline upright frames (sse.faces.decode: OpenCV's ORIENTATION_AUTO, PyAV's display matrix)."""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from sse.faces.decode import MediaReader

av = pytest.importorskip("av")

WIDTH, HEIGHT = 64, 32


def stored_frame() -> np.ndarray:
    """The frame as stored: black, with a white band over its left quarter."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:, :WIDTH // 4] = 255
    return image


def write_rotated_mp4(path: Path, degrees: int) -> None:
    """An MPEG-4 clip whose track header asks players to turn it by ``degrees`` clockwise: the
    'tkhd' matrix (a, b, c, d) = (cos, sin, -sin, cos) in 16.16 fixed point, as phones write it."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for _ in range(4):
            frame = av.VideoFrame.from_ndarray(stored_frame(), format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = bytearray(path.read_bytes())
    box = data.index(b"tkhd")
    matrix_at = box + 4 + (40 if data[box + 4] == 0 else 52)  # after version/flags, times, volume
    cos, sin = round(math.cos(math.radians(degrees))), round(math.sin(math.radians(degrees)))
    one = 1 << 16
    data[matrix_at:matrix_at + 36] = struct.pack(
        ">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


def frames_of(reader: MediaReader, backend: str) -> list[np.ndarray]:
    frames = reader.frames() if backend == "opencv" else reader._pyav_frames()
    return [f.image for f in frames]


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_frames_come_out_upright(tmp_path, degrees: int, backend: str) -> None:
    clip = tmp_path / f"rotated_{degrees}.mp4"
    write_rotated_mp4(clip, degrees)
    reader = MediaReader(clip)
    images = frames_of(reader, backend)
    assert reader.backend == backend
    assert len(images) == 4
    upright = np.rot90(stored_frame(), -degrees // 90)  # turned clockwise, as a player shows it
    for image in images:
        assert image.shape == upright.shape
        assert np.abs(image.astype(int) - upright).mean() < 12  # MPEG-4 is lossy
