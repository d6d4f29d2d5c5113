"""SSE on top of the ``caffe`` engine: network generators (``sse.nets``), face preprocessing
(``sse.faces``), video-level fusion and evaluation (``sse.fusion``), the demo data and main job."""
# The engine first, before numpy or anything else an sse tool loads: its quiet period
# (caffe.interrupt) then covers the heavy imports, so a Ctrl-C there prints one line.
import caffe  # noqa: F401
