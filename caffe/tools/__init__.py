"""Command-line tools with Caffe's names and arguments."""
