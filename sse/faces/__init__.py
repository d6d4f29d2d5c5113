"""Face preprocessing for SSE: video -> frames -> detect -> track -> landmarks -> align/frontalize ->
128x128 crops, manifests, list files (`python -m sse.faces` / `sse-preprocess`)."""
