"""sse-predict: from videos and photos to the emotions of every person in them.

Modules:
  models  which models run (``--model`` forms, the shipped default) as sse.shipped scorers
  video   one video's crops scored, its predictions.csv, summary.json, timelines, sheet, annotation
  draw    boxes, labels and probability bars; the annotated contact sheet
  cli     the command line (face pipeline with every person kept, then the models, then the reports)
  api     ``predict(paths)``: the same from Python, returning pandas tables and timeline figures

Test-time augmentation and ensembles are sse.shipped's (``EmotionModel.probs(faces, tta)``,
``Ensemble.from_file``), the same code the FER2013 evaluation runs.
"""
from .api import Predictions, predict

__all__ = ["Predictions", "predict"]
