"""What a benchmark ran on, for the machine line of its report (shared by the bench scripts)."""
from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """The processor's model name from ``lscpu`` (``platform.processor()`` where lscpu is missing)."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                 if line.startswith("Model name")), platform.processor())
