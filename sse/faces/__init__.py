"""Face preprocessing for SSE: video -> frames -> detect -> track -> landmarks -> align/frontalize ->
128x128 crops, manifests, list files. Command line: `sse-preprocess` / `python -m sse.faces`.

Modules, in the order the data flows:
  decode      video files (OpenCV, PyAV fallback), image folders (frame sequence or photo set);
              stride; rotation metadata; undecodable images named with the reason
  shots       shot cuts from frame differences
  detect      dlib HOG detector (+ optional Haar or MMOD for frames HOG finds nothing in)
  landmarks   dlib 68-point shape predictor and where its model file is found
  track       correlation trackers between detections, IoU association; a cut ends every track
  identity    dlib's 128-D face descriptor, face chips, bounded chip sampling per track
  quality     when a face's descriptor is evidence of identity (size, sharpness, pose, landmark fit);
              when a track is not a face at all
  people      false faces screened out; tracks split by identity and joined into people (trusted
              descriptors and position); what each track became and why
  face_model  mean 68-point shape, generic 3D face, crop template
  align       similarity alignment to the template
  frontalize  head pose (solvePnP) and frontal rendering with symmetric filling
  pipeline    one video: analysis pass and rendering pass
  video       one video's output folder and manifest.json (format in its docstring)
  lists       DIR/list.txt, frames.csv, videos.txt, labels.txt (formats in its docstring)
  inputs      INPUT paths -> videos with ids and labels
  batch       many videos: workers, progress, resume, summary
  cli         the command line

Python API (what sse-preprocess runs):
  jobs = inputs.discover([Path("clips")], label_csv=None, image_folders="auto")   # [VideoJob]
  summary = batch.run_batch(jobs, out, pipeline.PipelineConfig(faces="all"), workers=2)
  manifests = lists.read_manifests(out)      # every finished manifest under out, by video id
  rows = lists.crop_rows(manifests)          # CropRow(crop, unit, frame, label, status, person, time)
In memory, one video without writing anything:
  models = pipeline.FaceModels.load(config)
  analysis = pipeline.analyse(path, config, models)   # .people: [PersonRecords(person_id, records...)]
  for record, crop in pipeline.render(path, [r for p in analysis.people for r in p.records], config, models): ...
"""
