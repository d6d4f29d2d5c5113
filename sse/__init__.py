"""SSE on top of the ``caffe`` engine: network generators (``sse.nets``), face preprocessing
(``sse.faces``), video-level fusion and evaluation (``sse.fusion``), the demo data and main job."""
