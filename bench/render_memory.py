"""Peak memory of `inrkit render --size 4096x4096` from a field artifact (issue: under 2 GB).

Usage: .venv/bin/python bench/render_memory.py [ARTIFACT]   (default: a fresh paper-shaped LoE field)
Measures the peak resident set size of the render subprocess (ru_maxrss of the child), so it counts
everything: Python, torch, the output buffer and the evaluation chunks.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inrkit.core import artifacts
from inrkit.fields import build_field
from inrkit.stages.fit import field_config


def fresh_field(path: Path) -> Path:
    cfg = field_config("loe", 2, 1, 256, 64, 10, 2, "nearest", "coarse-to-fine", 8, 30.0, 0)
    f = build_field(cfg)
    signal = dict(source="none", shape=[256, 256], channels=1, video=False)
    artifacts.save(path, artifacts.Artifact(kind="field", tensors=f.state_dict(),
                                            config=dict(field=f.config, signal=signal)))
    return path


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    art = Path(sys.argv[1]) if len(sys.argv) > 1 else fresh_field(tmp / "loe.safetensors")
    out = tmp / "big.png"
    cmd = [sys.executable, "-m", "inrkit.cli", "render", str(art), "--size", "4096x4096", "--out", str(out),
           "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = dict(command=" ".join(cmd[1:]), artifact=str(art), peak_rss_mb=round(peak_mb, 1),
                  seconds=round(seconds, 1), png_bytes=out.stat().st_size)
    print(json.dumps(result, indent=2))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/render_memory.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
