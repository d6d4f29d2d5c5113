"""What a benchmark ran on, for the machine line of its report (shared by the bench scripts)."""
from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """The processor's model name from ``lscpu`` (``platform.processor()`` where lscpu is missing),
    with its family and model numbers where lscpu gives them: virtual machines often name every
    host CPU alike ("Intel(R) Xeon(R) Processor"), and libraries that pick kernels by the model
    (OpenBLAS) may treat two such hosts differently."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    fields = {}
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("Model name") or platform.processor()
    if fields.get("CPU family") and fields.get("Model"):
        name += f" (family {fields['CPU family']}, model {fields['Model']})"
    return name
