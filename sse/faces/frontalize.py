"""Head pose against the generic 3D face, and frontal rendering into the crop template.

Pose: cv2.solvePnP (EPnP, then Levenberg-Marquardt refinement) of the 68 detected landmarks against
face_model.MODEL_3D, with a pinhole camera of focal length max(width, height) centred on the frame.
Angles are in degrees, from R = Rz(roll) Ry(yaw) Rx(pitch) in OpenCV's camera frame (x right, y down,
z forward): yaw > 0 turns the face's image-left side away from the camera.

Frontal rendering: a piecewise-affine warp over the Delaunay triangulation of the template (the
frontal projection of the 3D model, placed in the crop) plus eight border points; each template
triangle takes its pixels from the triangle of the detected landmarks (border points follow the
least-squares similarity of all 68 landmarks to the template). The half the pose says is turned away
(the self-occluded one, whose landmarks and texture are unreliable) is then replaced by the mirror
image of the visible half, blended in from no mirroring at |yaw| <= yaw_start to full mirroring at
|yaw| >= yaw_full, with a soft seam along the face's midline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from .align import apply_affine, fit_similarity
from .face_model import JAW, MODEL_3D, template_landmarks


@dataclass(frozen=True, slots=True)
class Pose:
    """Head pose of one face: Euler angles (degrees), the turned-away side, the fit's error."""

    yaw: float
    pitch: float
    roll: float
    occluded_side: str  # 'left' or 'right': the image side of the face that is turned away
    reprojection_error: float  # mean landmark distance (pixels) between the fitted model and the input

    def as_dict(self) -> dict:
        return {
            "yaw": round(self.yaw, 2),
            "pitch": round(self.pitch, 2),
            "roll": round(self.roll, 2),
            "occluded_side": self.occluded_side,
            "reprojection_error": round(self.reprojection_error, 2),
        }


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Pinhole intrinsics with focal length max(width, height), principal point at the centre."""
    focal = float(max(width, height))
    return np.array([[focal, 0, width / 2.0], [0, focal, height / 2.0], [0, 0, 1]], dtype=np.float64)


def estimate_pose(landmarks: np.ndarray, width: int, height: int) -> Pose:
    """Fit the generic 3D face to 68 landmarks of a width x height frame."""
    image_points = np.ascontiguousarray(landmarks, dtype=np.float64).reshape(-1, 1, 2)
    object_points = np.ascontiguousarray(MODEL_3D).reshape(-1, 1, 3)
    camera = camera_matrix(width, height)
    no_distortion = np.zeros(4)
    ok, rvec, tvec = cv2.solvePnP(object_points, image_points, camera, no_distortion, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        raise ValueError("solvePnP found no pose")
    rvec, tvec = cv2.solvePnPRefineLM(object_points, image_points, camera, no_distortion, rvec, tvec)
    rotation, _ = cv2.Rodrigues(rvec)
    projected, _ = cv2.projectPoints(object_points, rvec, tvec, camera, no_distortion)
    error = float(np.linalg.norm(projected.reshape(-1, 2) - image_points.reshape(-1, 2), axis=1).mean())
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    depth = (MODEL_3D @ rotation.T)[:, 2]
    left_depth, right_depth = depth[JAW[:8]].mean(), depth[JAW[9:]].mean()
    occluded = "left" if left_depth > right_depth else "right"
    return Pose(float(yaw), float(pitch), float(roll), occluded, error)


class Frontalizer:
    """Renders faces frontally into a size x size crop; the triangulation is built once."""

    def __init__(self, size: int = 128, yaw_start: float = 15.0, yaw_full: float = 40.0, seam: float = 0.05):
        if not 0 <= yaw_start < yaw_full:
            raise ValueError("need 0 <= yaw_start < yaw_full")
        self.size = size
        self.yaw_start = yaw_start
        self.yaw_full = yaw_full
        self.template = template_landmarks(size)
        lo, mid, hi = -1.0, (size - 1) / 2.0, float(size)
        self.border = np.array([(lo, lo), (mid, lo), (hi, lo), (hi, mid), (hi, hi), (mid, hi), (lo, hi), (lo, mid)])
        vertices = np.vstack([self.template, self.border])
        triangulation = Delaunay(vertices)
        ys, xs = np.mgrid[0:size, 0:size]
        pixels = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
        simplex = triangulation.find_simplex(pixels)
        if (simplex < 0).any():
            raise AssertionError("border points must enclose the crop")
        transform = triangulation.transform[simplex]
        partial = np.einsum("pij,pj->pi", transform[:, :2], pixels - transform[:, 2])
        self._bary = np.column_stack([partial, 1.0 - partial.sum(axis=1)])  # (P, 3)
        self._corners = triangulation.simplices[simplex]  # (P, 3) vertex ids
        self.triangles = triangulation.simplices
        axis_distance = (np.arange(size) - mid) / size
        ramp = np.clip(np.abs(axis_distance) / seam, 0.0, 1.0)
        self._left_ramp = np.where(axis_distance < 0, ramp, 0.0)
        self._right_ramp = np.where(axis_distance > 0, ramp, 0.0)

    def mirror_weight(self, pose: Pose) -> float:
        """How much of the turned-away half is replaced by the mirrored visible half (0..1)."""
        return float(np.clip((abs(pose.yaw) - self.yaw_start) / (self.yaw_full - self.yaw_start), 0.0, 1.0))

    def warp(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Piecewise-affine warp of the face onto the template (no mirroring)."""
        landmarks = np.asarray(landmarks, dtype=np.float64)
        to_crop = fit_similarity(landmarks, self.template)
        to_frame = cv2.invertAffineTransform(to_crop)
        sources = np.vstack([landmarks, apply_affine(to_frame, self.border)])
        mapped = (sources[self._corners] * self._bary[:, :, None]).sum(axis=1)
        map_x = mapped[:, 0].reshape(self.size, self.size).astype(np.float32)
        map_y = mapped[:, 1].reshape(self.size, self.size).astype(np.float32)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, pose: Pose) -> np.ndarray:
        """The frontal size x size crop of the face with these landmarks and pose."""
        warped = self.warp(image, landmarks)
        weight = self.mirror_weight(pose)
        if weight == 0.0:
            return warped
        ramp = self._left_ramp if pose.occluded_side == "left" else self._right_ramp
        alpha = (weight * ramp)[None, :]
        if warped.ndim == 3:
            alpha = alpha[:, :, None]
        mirrored = warped[:, ::-1].astype(np.float32)
        blended = (1.0 - alpha) * warped.astype(np.float32) + alpha * mirrored
        return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
