"""One command for the day a GPU is available: correctness and speed facts of the GPU path, as ONE JSON object.

Why: CI and every contributor run on CPU, so the CUDA-only paths (the `gpu`-marked tests, mixed precision, the
deformable-conv kernels, the SDPA kernel of the head's global interaction) are only exercised when someone has a GPU;
this script gathers everything worth knowing in one run (< 8 minutes on one recent GPU) so that session spends its
time reading, not scripting. `--device cpu --quick` runs the same code on tiny sizes, so CI keeps it working.

What it measures, side by side in one process:
- gpu_tests: `pytest -m gpu -q` in a subprocess: passed / failed / skipped counts.
- runs: tuning methods (degmix, full, lora, mtlora) x precisions (fp32, bf16, fp16 autocast; fp16 with a GradScaler)
  on one fixed random batch: median step time after warm-up (SGD step of the engine's recipe), images/s, peak memory
  (CUDA: max_memory_allocated over the timed steps; CPU: peak RSS, VmHWM), the largest output difference to the fp32
  forward (same initial weights, same batch, eval mode), whether every loss was finite.
- deform_impl: the DeGMix deformable conv through torchvision's op vs grid_sample: output difference, step times.
- sdpa: which scaled-dot-product-attention kernel the head's global task interaction runs in each precision (the
  aten op seen by the profiler), and which backends accept its shapes (`torch.nn.attention.sdpa_kernel` probes).
Every number is finite, or null with a `<key>_why` (or a `skipped`) reason beside it. Progress goes to stderr.

    python benchmarks/gpu_check.py                      # CUDA: Swin-T preset, 448x576, batch 8
    python benchmarks/gpu_check.py --device cpu --quick # CI: tiny preset, 64x64, batch 2, 1 warm-up + 2 steps
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # fast_path.autocast names
SDPA_OPS = {  # aten op the dispatcher picked -> backend
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
    "aten::_scaled_dot_product_attention_math": "math",
}
DEFORM_TOLERANCE = 1e-6


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, choices=("cuda", "cpu"), help="default: cuda when available")
    ap.add_argument("--quick", action="store_true", help="tiny preset and sizes, 1 warm-up + 2 steps (CI, any device)")
    ap.add_argument("--preset", default=None, help="model preset (default degmix_tuning_swin_t_nyud; quick: tiny)")
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="default 448 576 (quick 64 64)")
    ap.add_argument("--batch", type=int, default=None, help="default 8 (quick 2)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per row, median reported (default 5, quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2, quick 1)")
    ap.add_argument("--methods", default="degmix,full,lora,mtlora")
    ap.add_argument("--tasks", default="semseg,depth")
    ap.add_argument("--budget", type=float, default=420.0,
                    help="seconds; rows not started by then are skipped with that reason (default 420)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's; 1 with --device cpu --quick, as the test suite)")
    ap.add_argument("--no-tests", action="store_true", help="skip the `pytest -m gpu` run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the object to this file")
    args = ap.parse_args(argv)
    q = args.quick
    args.preset = args.preset or ("degmix_tuning_tiny_nyud" if q else "degmix_tuning_swin_t_nyud")
    args.size = tuple(args.size or ((64, 64) if q else (448, 576)))
    args.batch = args.batch or (2 if q else 8)
    args.steps = args.steps or (2 if q else 5)
    args.warmup = (1 if q else 2) if args.warmup is None else args.warmup
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.threads is None and q and args.device == "cpu":
        args.threads = 1  # tiny tensors: more threads only spin against the other processes on the cores
    # what flops.build_benchmark_model / train_step.make_batch read
    args.backbone, args.dim, args.interaction = None, None, None
    if args.steps < 1 or args.batch < 1 or args.warmup < 0:
        ap.error("--steps and --batch must be >= 1 and --warmup >= 0")
    return args


def log(msg: str) -> None:
    print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)


def number(out: dict, key: str, value, why: str | None = None) -> None:
    """out[key] = value if it is a finite number; else null with out[key + '_why'] saying why."""
    if value is None:
        out[key] = None
        out[key + "_why"] = why or "not measured"
    elif isinstance(value, float) and not math.isfinite(value):
        out[key] = None
        out[key + "_why"] = f"non-finite ({value})"
    else:
        out[key] = value


# ------------------------------------------------------------------------------------------------ gpu tests
def run_gpu_tests(timeout: float) -> dict:
    """`pytest -m gpu -q` in a subprocess on the test files that use the marker (collecting the others only costs
    time); counts parsed from pytest's closing line."""
    files = sorted(str(f) for f in (REPO / "tests").glob("test_*.py") if "mark.gpu" in f.read_text())
    if not files:
        return {"command": "pytest -m gpu -q", "passed": 0, "failed": 0, "skipped": 0, "errors": 0, "ok": True,
                "note": "no test file uses the gpu marker"}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": "pytest -m gpu -q", "passed": None, "passed_why": f"timed out after {timeout:.0f} s",
                "failed": None, "failed_why": "timed out", "skipped": None, "skipped_why": "timed out",
                "ok": False}
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    closing = lines[-1] if lines else ""
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors", "deselected")}
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", closing):
        counts["errors" if word.startswith("error") else word] += int(n)
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))][:10]
    return {"command": "pytest -m gpu -q " + " ".join(Path(f).name for f in files), "returncode": proc.returncode,
            **counts,
            "ok": proc.returncode in (0, 5) and counts["failed"] == 0 and counts["errors"] == 0,
            "summary": closing, "failures": failures, "seconds": round(time.perf_counter() - t0, 2)}


# ------------------------------------------------------------------------------------------------ model rows
def precision_skip(precision: str, device: str) -> str | None:
    import torch

    if precision == "fp16" and device == "cpu":
        return ("fp16 is skipped on CPU: the GPU's mixed precision (autocast fp16 + GradScaler) is what this "
                "measures, and CPU fp16 kernels are neither fast nor the training path")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        return f"this GPU ({torch.cuda.get_device_name()}) has no bf16 support"
    return None


class Row:
    """One tuning method on one device: built once from the seed; every precision starts from the same weights."""

    def __init__(self, method: str, args, batch, criterion, device: str):
        import torch

        from degmix_tuning.tuning import apply_tuning
        from flops import build_benchmark_model

        torch.manual_seed(args.seed)
        self.model = build_benchmark_model(args)
        apply_tuning(self.model, method)
        self.model.to(device)
        # kept on the CPU, so a GPU's peak memory counts the model, its optimizer state and the step, not this copy
        self.initial = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self.method, self.args, self.batch, self.criterion, self.device = method, args, batch, criterion, device
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def reset(self):
        import torch

        self.model.load_state_dict(self.initial)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def outputs(self, precision: str) -> dict:
        """Eval-mode forward of the initial weights under `precision`, as float32 on the CPU."""
        import torch

        from degmix_tuning.training.fast_path import autocast

        self.reset()
        self.model.eval()
        with torch.no_grad(), autocast(AUTOCAST[precision], self.device):
            out = self.model(self.batch["image"])
        return {t: v.float().cpu() for t, v in out.items()}

    def make_step(self, precision: str):
        """A train step of the engine's recipe under `precision` -> step() returning the loss (a float)."""
        import torch

        from degmix_tuning.training.fast_path import autocast

        self.reset()
        self.model.train()
        scaler = torch.amp.GradScaler(self.device) if precision == "fp16" else None

        def step() -> float:
            with autocast(AUTOCAST[precision], self.device):
                out = self.model(self.batch["image"])
                loss, _ = self.criterion(out, self.batch, check_finite=False)
            if scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(self.optimizer)
                scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())

        return step


class PeakMemory:
    """Peak memory over a span: CUDA max_memory_allocated (weights, optimizer state, activations), or on Linux CPU
    the process's peak RSS (VmHWM, reset through /proc/self/clear_refs at the start)."""

    def __init__(self, device: str):
        import torch

        from degmix_tuning.training.step_stats import proc_status_kb

        self.torch, self.device, self.kb = torch, device, proc_status_kb
        self.available = device == "cuda" or (
            proc_status_kb("VmHWM") is not None and os.access("/proc/self/clear_refs", os.W_OK))
        self.kind = ("torch.cuda.max_memory_allocated over the timed steps" if device == "cuda" else
                     "peak RSS of the process over the timed steps (VmHWM)" if self.available else None)
        self.why = None if self.available else "peak RSS needs Linux with a writable /proc/self/clear_refs"

    def start(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()
        elif self.available:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")

    def stop(self) -> int | None:
        if self.device == "cuda":
            return int(self.torch.cuda.max_memory_allocated())
        return (self.kb("VmHWM") or 0) * 1024 if self.available else None


def time_steps(step, warmup: int, steps: int, sync) -> tuple[list[float], list[float]]:
    """-> (timed step seconds, every loss incl. warm-up)."""
    losses, times = [], []
    for _ in range(warmup):
        losses.append(step())
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        losses.append(step())
        sync()
        times.append(time.perf_counter() - t0)
    return times, losses


def max_diff(ref: dict, out: dict) -> tuple[float, float, dict]:
    """(max abs difference, that over max |ref|, per task abs) between two output dicts."""
    per_task, rel = {}, 0.0
    for t in ref:
        d = float((out[t] - ref[t]).abs().max())
        per_task[t] = d if math.isfinite(d) else float("inf")
        scale = float(ref[t].abs().max()) or 1.0
        rel = max(rel, per_task[t] / scale)
    return max(per_task.values()), rel, per_task


def measure(row: Row, precision: str, reference: dict | None, fp32_step: float | None, args, memory: PeakMemory,
            sync) -> tuple[dict, dict]:
    """One (method, precision) cell: outputs vs the fp32 forward, then warm-up + timed train steps.
    -> (cell, outputs)"""
    res: dict = {"trainable_params": row.trainable}
    out = row.outputs(precision)
    reference = out if precision == "fp32" else reference
    if reference is None:
        for key in ("max_abs_diff_vs_fp32", "max_rel_diff_vs_fp32"):
            number(res, key, None, "the fp32 row did not run")
    else:
        abs_d, rel_d, per_task = max_diff(reference, out)
        number(res, "max_abs_diff_vs_fp32", abs_d)
        number(res, "max_rel_diff_vs_fp32", rel_d)
        res["abs_diff_vs_fp32_per_task"] = {t: (v if math.isfinite(v) else None) for t, v in per_task.items()}
        if any(not math.isfinite(v) for v in per_task.values()):
            res["abs_diff_vs_fp32_per_task_why"] = "non-finite outputs in this precision"
    step = row.make_step(precision)
    memory.start()
    times, losses = time_steps(step, args.warmup, args.steps, sync)
    peak = memory.stop()
    med = statistics.median(times)
    number(res, "step_s", med)
    res["step_times_s"] = times
    number(res, "images_per_s", args.batch / med if med > 0 else None, "step time was 0")
    number(res, "peak_memory_bytes", peak, memory.why)
    res["loss_finite"] = all(math.isfinite(v) for v in losses)
    number(res, "loss_first", losses[0])
    number(res, "loss_last", losses[-1])
    fp32_step = med if precision == "fp32" else fp32_step
    number(res, "step_time_vs_fp32", med / fp32_step if fp32_step else None, "the fp32 row did not run")
    return res, out


def run_rows(args, device: str, batch, criterion, deadline: float, memory: PeakMemory) -> dict:
    """Every method x precision cell, one method's model at a time (so peak memory is that model's alone)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    over_budget = f"time budget of {args.budget:.0f} s reached before this row"
    runs: dict = {}
    for method in args.methods:
        runs[method] = {}
        if time.perf_counter() > deadline:
            runs[method] = {p: {"skipped": over_budget} for p in PRECISIONS}
            continue
        log(f"{method}: building")
        row = Row(method, args, batch, criterion, device)
        reference = None
        for precision in PRECISIONS:
            skip = precision_skip(precision, device) or (over_budget if time.perf_counter() > deadline else None)
            if skip:
                runs[method][precision] = {"skipped": skip}
                continue
            log(f"{method} {precision}: {args.warmup} warm-up + {args.steps} timed steps")
            try:
                fp32_step = runs[method].get("fp32", {}).get("step_s")
                runs[method][precision], out = measure(row, precision, reference, fp32_step, args, memory, sync)
            except torch.cuda.OutOfMemoryError as exc:  # a cell that does not fit is an answer, not a crash
                runs[method][precision] = {"skipped": "CUDA out of memory: " + str(exc).splitlines()[0][:200]}
                row.optimizer = None
                torch.cuda.empty_cache()
                continue
            if precision == "fp32":
                reference = out
        del row
        if device == "cuda":
            torch.cuda.empty_cache()
    return runs


# ------------------------------------------------------------------------------------------------ deform impl
def check_deform(args, device: str, batch, criterion) -> dict:
    """The degmix model with torchvision's deform op vs grid_sample (one model each, same seed, so the same weights):
    fp32 eval outputs, then train steps timed in interleaved rounds."""
    import torch

    from degmix_tuning.models.deformable_mixer import ChannelDeformableConv, resolve_deform_impl
    from train_step import set_deform_impl

    impls = ("torchvision", "grid_sample")
    rows = {impl: Row("degmix", args, batch, criterion, device) for impl in impls}
    if not any(isinstance(m, ChannelDeformableConv) for m in rows["torchvision"].model.modules()):
        return {"skipped": f"preset {args.preset} has no deformable conv"}
    for impl, row in rows.items():
        set_deform_impl(row.model, impl)
    outs = {impl: row.outputs("fp32") for impl, row in rows.items()}
    abs_d, rel_d, _ = max_diff(outs["torchvision"], outs["grid_sample"])
    res: dict = {"auto_resolves_to": resolve_deform_impl("auto", torch.device(device))}
    number(res, "max_abs_diff", abs_d)
    number(res, "max_rel_diff", rel_d)
    res[f"equal_to_{DEFORM_TOLERANCE:g}"] = bool(abs_d <= DEFORM_TOLERANCE)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    steps = {impl: row.make_step("fp32") for impl, row in rows.items()}
    times: dict = {impl: [] for impl in impls}
    for rnd in range(args.warmup + args.steps):
        for impl in impls:  # interleaved rounds: machine load hits both alike
            sync()
            t0 = time.perf_counter()
            steps[impl]()
            sync()
            if rnd >= args.warmup:
                times[impl].append(time.perf_counter() - t0)
    med = {impl: statistics.median(t) for impl, t in times.items()}
    for impl in impls:
        number(res, f"{impl}_step_s", med[impl])
    res["faster"] = min(impls, key=med.get)
    number(res, "grid_sample_vs_torchvision_step_time",
           med["grid_sample"] / med["torchvision"] if med["torchvision"] > 0 else None, "step time was 0")
    return res


# ------------------------------------------------------------------------------------------------ sdpa
def AtenOps():
    """A dispatch mode that records the name of every aten op run inside it (`aten::<name>`), quietly."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append("aten::" + func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    return Recorder()


def check_sdpa(args, device: str, batch, criterion) -> dict:
    """The head's global task interaction: the SDPA op it runs per precision, and which backends take its shapes."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from degmix_tuning.training.fast_path import autocast

    row = Row("degmix", args, batch, criterion, device)
    head = row.model.head
    attn = getattr(getattr(head, "task_interaction", None), "attn", None)
    if attn is None:
        return {"skipped": "the model's head has no task interaction attention"}
    res: dict = {"interaction": getattr(head.cfg, "interaction", None), "per_precision": {}}
    if res["interaction"] != "global":
        res["note"] = f"interaction={res['interaction']!r}: only 'global' attends over an image's tokens"
    feats = row.model.extract_features(batch["image"])
    original = attn._attend
    for precision in PRECISIONS:
        skip = precision_skip(precision, device)
        if skip:
            res["per_precision"][precision] = {"skipped": skip}
            continue
        seen: dict = {}

        def capture(q, k, v, _seen=seen):
            if not _seen:
                _seen["shape"] = list(q.shape)
                _seen["dtype"] = str(q.dtype).replace("torch.", "")
                with AtenOps() as ops:
                    out = original(q, k, v)
                _seen["ops"] = sorted({o for o in ops.names if o.startswith("aten::_scaled_dot")})
                return out
            return original(q, k, v)

        attn._attend = capture
        try:
            row.model.eval()
            with torch.no_grad(), autocast(AUTOCAST[precision], device):
                head(feats, tuple(args.size))
        finally:
            attn._attend = original
        if not seen:
            res["per_precision"][precision] = {"skipped": "the interaction did not call scaled_dot_product_attention"}
            continue
        used = [SDPA_OPS[o] for o in seen["ops"] if o in SDPA_OPS]
        entry = {"q_shape": seen["shape"], "dtype": seen["dtype"], "aten_ops": seen["ops"],
                 "backend": used[0] if used else None}
        if not used:
            entry["backend_why"] = "no known SDPA kernel op was dispatched (the math composite ran as plain ops?)"
        probes = {}
        dtype = getattr(torch, seen["dtype"])
        q = torch.randn(seen["shape"], device=device, dtype=dtype)
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                        SDPBackend.MATH):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    with sdpa_kernel([backend]), torch.no_grad():
                        F.scaled_dot_product_attention(q, q, q)
                    probes[backend.name.lower()] = "ok"
                except Exception as exc:  # noqa: BLE001 - a backend that refuses these shapes is the answer
                    probes[backend.name.lower()] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        entry["backends_accepting_these_shapes"] = probes
        res["per_precision"][precision] = entry
        del q
    return res


# ------------------------------------------------------------------------------------------------ main
def machine(device: str) -> dict:
    import torch

    from train_step import machine_info

    info = machine_info()
    info["device"] = device
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_bytes=int(props.total_memory),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    info["loadavg_start"] = list(info.get("loadavg_start", ()))
    return info


def problems_of(result: dict) -> list[str]:
    """What a reader must look at: failed tests, non-finite losses, deform outputs that differ."""
    found = []
    tests = result.get("gpu_tests", {})
    if tests.get("ok") is False:
        found.append(f"gpu tests: {tests.get('summary') or tests.get('passed_why')}")
    for method, rows in result.get("runs", {}).items():
        for precision, r in rows.items():
            if r.get("loss_finite") is False:
                found.append(f"{method} {precision}: non-finite loss")
    deform = result.get("deform_impl", {})
    if deform.get(f"equal_to_{DEFORM_TOLERANCE:g}") is False:
        found.append(f"deform_impl: torchvision and grid_sample outputs differ by {deform.get('max_abs_diff')}")
    return found


def run(args) -> dict:
    import torch

    from degmix_tuning.data.info import get_dataset_info
    from degmix_tuning.losses import MultiTaskLoss
    from train_step import make_batch

    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no CUDA device; pass --device cpu --quick")
    deadline = started + args.budget
    result: dict = {"check": "gpu_check", "device": device, "quick": args.quick, "machine": machine(device)}
    result["settings"] = {"preset": args.preset, "size": list(args.size), "batch": args.batch, "steps": args.steps,
                          "warmup": args.warmup, "methods": args.methods, "tasks": args.tasks.split(","),
                          "precisions": list(PRECISIONS), "seed": args.seed, "budget_s": args.budget,
                          "threads": torch.get_num_threads()}
    if args.no_tests:
        result["gpu_tests"] = {"skipped": "--no-tests"}
    else:
        log("pytest -m gpu -q")
        result["gpu_tests"] = run_gpu_tests(timeout=max(60.0, args.budget / 2))
        if device == "cpu" and result["gpu_tests"].get("passed") == 0:
            result["gpu_tests"]["note"] = "no CUDA device: the gpu tests skip themselves (tests/conftest.py)"
    tasks = args.tasks.split(",")
    info = get_dataset_info("nyud")
    criterion = MultiTaskLoss(tasks, info)
    batch = make_batch(args, tasks, info, device)
    memory = PeakMemory(device)
    result["memory_kind"] = memory.kind or memory.why
    result["runs"] = run_rows(args, device, batch, criterion, deadline, memory)
    log("deform_impl: torchvision vs grid_sample")
    result["deform_impl"] = check_deform(args, device, batch, criterion)
    log("sdpa backend of the global interaction")
    result["sdpa"] = check_sdpa(args, device, batch, criterion)
    result["problems"] = problems_of(result)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random-init presets: never wait on the hub
    result = run(args)
    text = json.dumps(result, indent=2, allow_nan=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
