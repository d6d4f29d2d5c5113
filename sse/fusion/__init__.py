"""Video-level fusion and evaluation: frames -> videos, models -> ensemble, scores and pictures.

Python API: ``fuse_models``, ``aggregate_frames``, ``search_weights``, ``fit_weights``, ``evaluate``;
command lines ``sse-fuse`` and ``sse-evaluate`` (sse.fusion.cli)."""
from sse.fusion.errors import FusionError, FusionWarning
from sse.fusion.evaluate import Evaluation, evaluate, save_confusion_png, save_timeline_png
from sse.fusion.formats import (read_frame_list, read_labels, read_predictions, read_video_list,
                                write_predictions)
from sse.fusion.frames import aggregate_frames
from sse.fusion.models import check_models, fit_weights, fuse_models, search_weights

__all__ = ["FusionError", "FusionWarning", "Evaluation", "evaluate", "save_confusion_png",
           "save_timeline_png", "read_frame_list", "read_labels", "read_predictions", "read_video_list",
           "write_predictions", "aggregate_frames", "check_models", "fit_weights", "fuse_models",
           "search_weights"]
