"""Collect the sections that the benchmark scripts write into ``bench/results/*.md`` into
``bench/RESULTS.md`` (the demo first, then engine, training, data, faces, leveldb2mat, FER2013, GPU).

    python bench/merge_results.py
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from caffe.atomic import write_text  # noqa: E402

ORDER = ["demo", "engine", "engine_ablation", "vs_bvlc", "vs_bvlc_bounds", "vs_bvlc_2threads", "vs_bvlc_2threads_run1", "vs_bvlc_bounds_2threads", "vs_bvlc_layers", "conv_routes", "train", "train_memory", "train_2threads_holonet", "train_2threads_densenet", "train_1thread_holonet", "train_1thread_densenet", "data", "faces", "predict", "leveldb2mat", "fer2013", "pipeline_accuracy_publictest", "pipeline_accuracy_privatetest", "fer2013_raw_crops", "fer2013_time", "fer2013_stage1", "fer2013_early", "gpu", "train_gpu"]
HEADER = """# Benchmark and experiment results

Each section was written by the script it names, run on the machine it describes; the numbers are
what was measured there, nothing else. These machines are shared and noisy: compare the ratios
measured side by side within a section, not absolute times across sections. No GPU was available
to the sessions that produced these numbers unless a section names the card.

"""


def main() -> int:
    sections = sorted(HERE.glob("results/*.md"),
                      key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem))
    body = "\n\n".join(p.read_text().strip() for p in sections)
    write_text(HERE / "RESULTS.md", HEADER + body + "\n")
    print(f"bench/RESULTS.md: {len(sections)} sections ({', '.join(p.stem for p in sections)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
