"""bench/gpu.sh (issue 17) is tested before any GPU is at hand: its chip table, and a whole `--device cpu --tiny`
run (slow), which must finish within the 2 minutes the issue allows, every case measured, none failed."""

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench_module():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chips_are_looked_up_by_name():
    peak_of = bench_module().peak_of
    assert peak_of("NVIDIA H100 80GB HBM3") == peak_of("NVIDIA H200") == 989.0  # SXM parts
    assert peak_of("NVIDIA H100 PCIe") == 756.0 and peak_of("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_of("Tesla V100-SXM2-16GB") is None  # reported as unknown


@pytest.mark.slow
def test_tiny_cpu_run_is_complete_and_under_two_minutes(tmp_path):
    out = tmp_path / "gpu.json"
    started = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--device", "cpu", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert seconds < 120, seconds
    result = json.loads(out.read_text())
    sections = result["sections"]
    assert list(sections) == ["agreement", "generator", "fit", "meta", "training"]
    rows = [row for section in sections.values() for row in section]
    assert not [row for row in rows if "error" in row]
    for row in sections["agreement"]:  # CPU against CPU: fp32 exact; bf16 rounds (sine networks the most)
        assert row["max_abs_fp32"] == 0 and 0 < row["rel_bf16"] < 0.15, row
    assert [row["case"] for row in sections["generator"]] == ["fp32", "tf32", "bf16", "compiled fp32"]
    assert all(row["images_per_s"] > 0 for row in sections["generator"] + sections["training"])
    assert "### generator" in done.stdout and "loe_over_mlp_time" in done.stdout
