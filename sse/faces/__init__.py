"""Face preprocessing for SSE: video -> frames -> detect -> track -> landmarks -> align/frontalize ->
128x128 crops, manifests, list files. Command line: `sse-preprocess` / `python -m sse.faces`.

Modules, in the order the data flows:
  decode      video files (OpenCV, PyAV fallback), image folders; stride; rotation metadata
  detect      dlib HOG detector (+ optional Haar or MMOD for frames HOG finds nothing in)
  landmarks   dlib 68-point shape predictor and where its model file is found
  track       correlation trackers between detections, IoU association, target choice
  face_model  mean 68-point shape, generic 3D face, crop template
  align       similarity alignment to the template
  frontalize  head pose (solvePnP) and frontal rendering with symmetric filling
  pipeline    one video: analysis pass and rendering pass
  video       one video's output folder and manifest.json (format in its docstring)
  lists       DIR/list.txt and DIR/frames.csv (formats in its docstring)
  inputs      INPUT paths -> videos with ids and labels
  batch       many videos: workers, progress, resume, summary
  cli         the command line
"""
