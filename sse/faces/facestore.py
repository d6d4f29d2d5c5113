"""Compact storage of the per-face data of one video's analysis (issue 21).

What the face pipeline knows per face (one person in one sampled frame) lives for the whole video:
its 68 landmarks and, for the faces of kept people, its head pose. Held as Python objects (a float32
68 x 2 ndarray, 0.6 KB with its header; a Pose, 0.15 KB with its floats) they made the memory of
pass 1 grow by about 1.4 KB a face, 1.5 MB per minute of a crowded clip. A ``FaceStore`` keeps
them compactly instead:

- landmarks go, one fixed-size row of float32 per face, to an append-only unnamed temporary file
  (``tempfile.TemporaryFile``: no name on disk, removed when closed or when the process ends); the
  last rows wait in a small write buffer, so writing is sequential and nothing is mapped into
  memory. A row is read back (one ``pread``) when a record's landmarks are asked for: for its head
  pose, its crop and its manifest entry;
- head poses are four float64 (yaw, pitch, roll, reprojection error) and a one-byte side code in
  numpy blocks of ``BLOCK`` rows, indexed by the face's landmark row: 33 bytes a face.

Values round-trip exactly (float32 landmarks stay float32, the pose's Python floats are float64), so
the outputs are the same as with the objects.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .frontalize import Pose

BLOCK = 4096  # pose rows per numpy block
FLUSH_BYTES = 1 << 18  # write buffer (256 KB) of landmark rows not yet in the file


class FaceStore:
    """Landmark rows of one shape (float32) in a temporary file; poses in numpy blocks."""

    def __init__(self, shape: tuple[int, ...] = (68, 2), directory: str | os.PathLike | None = None) -> None:
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape)) * 4
        self._directory = directory
        self._file = None  # opened at the first flush
        self._written = 0  # rows in the file
        self._pending = bytearray()  # rows after those, not yet written
        self._count = 0
        self._poses: list[np.ndarray] = []  # (BLOCK, 4) float64: yaw, pitch, roll, reprojection error
        self._sides: list[np.ndarray] = []  # (BLOCK,) uint8: 0 = no pose, else 1 + index in _side_names
        self._side_names: list[str] = []

    def __len__(self) -> int:
        return self._count

    def fits(self, points: object) -> bool:
        """Whether `points` can be stored without changing a value (a float32 array of the row shape)."""
        return isinstance(points, np.ndarray) and points.dtype == np.float32 and points.shape == self.shape

    def add(self, points: np.ndarray) -> int:
        """Append one face's landmarks (see ``fits``); returns its row."""
        if not self.fits(points):
            raise ValueError(f"expected a float32 array of shape {self.shape}, got {getattr(points, 'dtype', type(points))} "
                             f"{getattr(points, 'shape', '')}")
        self._pending += np.ascontiguousarray(points).tobytes()
        row = self._count
        self._count += 1
        if len(self._pending) >= FLUSH_BYTES:
            self._flush()
        return row

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="sse-faces-", dir=self._directory)
        self._file.seek(self._written * self.row_bytes)
        self._file.write(self._pending)
        self._file.flush()
        self._written += len(self._pending) // self.row_bytes
        self._pending = bytearray()

    def landmarks(self, row: int) -> np.ndarray:
        """A new (writable) float32 array with the landmarks of `row`."""
        if not 0 <= row < self._count:
            raise IndexError(row)
        out = np.empty(self.shape, dtype=np.float32)
        if row >= self._written:
            start = (row - self._written) * self.row_bytes
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(self._pending, np.uint8, self.row_bytes, start)
        else:
            got = os.preadv(self._file.fileno(), [memoryview(out).cast("B")], row * self.row_bytes)
            if got != self.row_bytes:
                raise OSError(f"face store: short read of row {row} ({got} of {self.row_bytes} bytes)")
        return out

    def set_pose(self, row: int, pose: Pose) -> None:
        if not 0 <= row < self._count:
            raise IndexError(row)
        block, k = divmod(row, BLOCK)
        while len(self._poses) <= block:
            self._poses.append(np.zeros((BLOCK, 4), dtype=np.float64))
            self._sides.append(np.zeros(BLOCK, dtype=np.uint8))
        if pose.occluded_side not in self._side_names:
            if len(self._side_names) >= 255:
                raise ValueError("face store: too many occluded_side values")
            self._side_names.append(pose.occluded_side)
        self._poses[block][k] = (pose.yaw, pose.pitch, pose.roll, pose.reprojection_error)
        self._sides[block][k] = 1 + self._side_names.index(pose.occluded_side)

    def pose(self, row: int) -> Pose | None:
        block, k = divmod(row, BLOCK)
        if block >= len(self._poses) or not self._sides[block][k]:
            return None
        yaw, pitch, roll, error = (float(v) for v in self._poses[block][k])
        return Pose(yaw, pitch, roll, self._side_names[self._sides[block][k] - 1], error)

    def clear_pose(self, row: int) -> None:
        block, k = divmod(row, BLOCK)
        if block < len(self._sides):
            self._sides[block][k] = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending = bytearray()
        self._written = self._count = 0
        self._poses, self._sides = [], []
