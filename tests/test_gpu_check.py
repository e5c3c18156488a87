"""benchmarks/gpu_check.py runs on CPU (`--device cpu --quick`), so CI keeps the GPU day's one command working: its
output is ONE JSON object with every section, and every number in it is finite or a null with a reason beside it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
METHODS = ("degmix", "full", "lora", "mtlora")
PRECISIONS = ("fp32", "bf16", "fp16")


def _unexplained(node, path="$"):
    """Paths of non-finite numbers, and of nulls with neither a `<key>_why` sibling nor a `skipped` reason."""
    bad = []
    if isinstance(node, dict):
        explained = isinstance(node.get("skipped"), str)
        for key, value in node.items():
            if value is None and not (explained or isinstance(node.get(f"{key}_why"), str)):
                bad.append(f"{path}.{key}")
            bad += _unexplained(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if value is None:
                bad.append(f"{path}[{i}]")
            bad += _unexplained(value, f"{path}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        bad.append(path)
    return bad


def test_quick_cpu_run_prints_one_complete_json_object():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)  # the whole of stdout is one object: progress went to stderr
    assert result["device"] == "cpu" and result["quick"] is True and result["problems"] == []
    assert not _unexplained(result), _unexplained(result)

    tests = result["gpu_tests"]  # no CUDA here: the gpu-marked tests ran and skipped themselves
    assert tests["ok"] and tests["failed"] == tests["errors"] == tests["passed"] == 0 and tests["skipped"] >= 1

    assert set(result["runs"]) == set(METHODS)
    for method in METHODS:
        cells = result["runs"][method]
        assert set(cells) == set(PRECISIONS)
        assert "GradScaler" in cells["fp16"]["skipped"]  # fp16 skipped on CPU, with the reason
        for precision in ("fp32", "bf16"):
            cell = cells[precision]
            assert cell["loss_finite"] is True and cell["step_s"] > 0 and cell["images_per_s"] > 0
            assert len(cell["step_times_s"]) == result["settings"]["steps"]
            assert cell["peak_memory_bytes"] is None or cell["peak_memory_bytes"] > 0
        assert cells["fp32"]["max_abs_diff_vs_fp32"] == 0.0 and cells["fp32"]["step_time_vs_fp32"] == 1.0
        assert 0 < cells["bf16"]["max_rel_diff_vs_fp32"] < 0.1  # bf16 moved the outputs, a little

    deform = result["deform_impl"]
    assert deform["equal_to_1e-06"] is True and deform["faster"] in ("torchvision", "grid_sample")
    assert deform["auto_resolves_to"] == "grid_sample"  # on CPU (models/deformable_mixer.py)

    sdpa = result["sdpa"]["per_precision"]
    assert sdpa["fp32"]["backend"] == "flash (cpu)" and sdpa["fp32"]["backends_accepting_these_shapes"]["math"] == "ok"
    assert sdpa["bf16"]["dtype"] == "bfloat16" and "skipped" in sdpa["fp16"]
