"""Train-step time, images/s, step memory and FLOPs of tuning methods, side by side in one process.

Every method is built from the same preset with the same seed, trained on the same random batch with the engine's
recipe (SGD 0.9 momentum, MultiTaskLoss), warmed up, then timed in interleaved rounds (round i runs one step of
every method), so machine load hits all methods alike; the median step time is reported, with ratios to `full`.

Rows: the tuning methods of --methods, plus "degmix+cache" with --cache (the head-only step on features from the
in-memory `FeatureCache`, digest checks included), "degmix+infmode" with --inference-mode (backbone under
torch.inference_mode), "degmix+compile" with --compile-head (head compiled in place; the compile happens in the
first, untimed call), "degmix+head" with --head-gflops (the head-only step on features computed once, no cache),
and "degmix+head+compile" with both --head-gflops and --compile-head (that head-only step with the head compiled).
A compiled head hides its ops from the FLOP counter, so "+compile" rows count their FLOPs on the same model with the
compiled call switched off for the counting step (the eager head computes the same thing).
--deform-impl torchvision,grid_sample runs every row once per deformable-conv implementation ("row@impl").

--head-gflops also times a 1024^3 float32 matmul on one thread (sgemm) in every round and reports each row's
achieved GFLOP/s (counted train FLOPs / median step time) as a fraction of it; --profile-head adds a torch.profiler
breakdown of one degmix+head step (top ops by time, FLOPs per op); --layer-ceiling replays every Linear/Conv2d
call of one degmix+head step alone against sgemm (the head's GFLOP/s if every op without FLOPs took no time).
Steps and sgemm are timed in wall and in process CPU seconds: with --threads 1 the CPU time is the computation's
own time and holds up on a shared machine, where a short sgemm and a long step see different load.

Memory (CPU): the peak resident set size during one step minus the RSS just before it (Linux VmHWM, reset through
/proc/self/clear_refs before each step; glibc's mmap threshold is pinned to 64 KiB so freed tensors leave the RSS).
The meter is `StepMemory` of degmix_tuning/training/step_stats.py, which every training run uses too.
It covers activations, gradients and temporaries of the step, not the weights or optimizer state held between steps.
On CUDA, torch.cuda.max_memory_allocated is used instead.

    python benchmarks/train_step.py --backbone swin_t --size 224 288 --batch 2 --steps 5 --warmup 1 --cache
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from degmix_tuning.training.step_stats import MMAP_THRESHOLD as _MMAP_BYTES, StepMemory  # noqa: E402

MMAP_THRESHOLD = str(_MMAP_BYTES)  # for glibc's MALLOC_MMAP_THRESHOLD_ (see StepMemory)
RATIOS = (  # (row, reference row): step-time ratios printed for information (the first round's 0.45x / 0.6x /
    # 0.15x targets were withdrawn after measuring the head's FLOPs: benchmarks/README.md)
    ("degmix", "full"),
    ("degmix", "lora"),
    ("degmix+cache", "full"),
)
HEAD_SGEMM_TARGET = 0.85  # the target: the head step reaches >= 85% of single-thread sgemm GFLOP/s
SGEMM_N = 1024


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Side-by-side train-step benchmark of tuning methods (CPU or GPU).")
    ap.add_argument("--backbone", default="swin_t", help="backbone of the preset degmix_tuning_<backbone>_nyud")
    ap.add_argument("--preset", default=None, help="model preset (overrides --backbone)")
    ap.add_argument("--size", type=int, nargs=2, default=(224, 288), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per method (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    ap.add_argument("--methods", default="degmix,full,lora,mtlora")
    ap.add_argument("--tasks", default="semseg,depth")
    ap.add_argument("--dim", type=int, default=None, help="head width d (preset default 128)")
    ap.add_argument("--interaction", default=None, help="head task interaction: global | pixel | official")
    ap.add_argument("--head", default="default", choices=("default", "degmix", "light"),
                    help="head for the baselines: each method's default (mtlora: light) or the same for all")
    ap.add_argument("--bf16", action="store_true", help="torch.autocast bf16 around forward + loss")
    ap.add_argument("--channels-last", action="store_true", help="channels_last weights and images")
    ap.add_argument("--cache", action="store_true", help="add the degmix+cache row (head-only step)")
    ap.add_argument("--inference-mode", action="store_true", help="add degmix+infmode (backbone in inference_mode)")
    ap.add_argument("--compile-head", action="store_true", help="add degmix+compile (torch.compile of the head)")
    ap.add_argument("--deform-impl", default=None, metavar="IMPL[,IMPL...]",
                    help="DeGMix deformable conv: auto | grid_sample | torchvision (default: the preset's). Several, "
                         "comma-separated: every row runs once per impl, side by side, named row@impl")
    ap.add_argument("--head-gflops", action="store_true",
                    help="add degmix+head (head-only step) and a 1-thread sgemm timing; GFLOP/s of every row with "
                         "FLOPs as a fraction of sgemm (target for the head step: >= 85%%)")
    ap.add_argument("--profile-head", action="store_true",
                    help="profile one degmix+head step per impl (torch.profiler): top ops by time, FLOPs per op")
    ap.add_argument("--layer-ceiling", action="store_true",
                    help="(implies --head-gflops) time every Linear/Conv2d call of one degmix+head step alone "
                         "(forward + backward on its own shapes, 1 thread) against sgemm: the head's "
                         "GFLOP/s if every other op took no time")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.layer_ceiling:  # the ceiling is measured against the same sgemm
        args.head_gflops = True
    rows = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.cache and "degmix+cache" not in rows:
        rows.append("degmix+cache")
    if args.inference_mode and "degmix+infmode" not in rows:
        rows.append("degmix+infmode")
    if args.compile_head and "degmix+compile" not in rows:
        rows.append("degmix+compile")
    if (args.head_gflops or args.profile_head) and "degmix+head" not in rows:
        rows.append("degmix+head")
    if args.head_gflops and args.compile_head and "degmix+head+compile" not in rows:
        rows.append("degmix+head+compile")
    args.impls = [i.strip() for i in args.deform_impl.split(",") if i.strip()] if args.deform_impl else [None]
    from degmix_tuning.models.deformable_mixer import DEFORM_IMPLS

    if args.deform_impl and any(i not in DEFORM_IMPLS for i in args.impls):
        ap.error(f"--deform-impl: each value must be one of {DEFORM_IMPLS}, got {args.deform_impl!r}")
    args.rows = rows if len(args.impls) == 1 else [f"{r}@{i}" for r in rows for i in args.impls]
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        ap.error("--steps and --batch must be >= 1 and --warmup >= 0")
    return args


# ------------------------------------------------------------------------------------------------ runners
@dataclass
class Runner:
    name: str
    method: str
    head: str
    model: object
    step: object
    trainable: int
    impl: str | None = None
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)  # process CPU seconds per step (robust to a shared machine)
    memory: list = field(default_factory=list)
    flops: int | None = None


def make_batch(args, tasks, info, device):
    import torch

    g = torch.Generator().manual_seed(args.seed)
    h, w = args.size
    batch = {"image": torch.randn(args.batch, 3, h, w, generator=g)}
    for t in tasks:
        kind = info.task_channels([t])[t]
        if t in ("semseg", "human_parts"):
            batch[t] = torch.randint(0, kind, (args.batch, h, w), generator=g)
        elif t == "sal":
            batch[t] = torch.randint(0, 2, (args.batch, h, w), generator=g)
        elif t == "depth":
            batch[t] = 0.5 + 5 * torch.rand(args.batch, 1, h, w, generator=g)
        elif t == "normals":
            n = torch.randn(args.batch, 3, h, w, generator=g)
            batch[t] = n / n.norm(dim=1, keepdim=True)
        elif t == "edge":
            batch[t] = (torch.rand(args.batch, 1, h, w, generator=g) < 0.1).float()
        else:
            raise ValueError(f"benchmark: no synthetic label recipe for task {t!r}")
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["meta"] = {"id": [f"bench-{i}" for i in range(args.batch)]}
    return batch


def make_runner(row: str, args, batch, criterion, device) -> Runner:
    import torch

    from degmix_tuning.training.fast_path import (
        autocast, channels_last_images, compile_head, frozen_features_inference_mode, to_channels_last,
    )
    from degmix_tuning.training.feature_cache import FeatureCache
    from degmix_tuning.tuning import apply_tuning
    from flops import build_benchmark_model

    base, _, impl = row.partition("@")
    method, _, variant = base.partition("+")
    if variant and method != "degmix":
        raise ValueError(f"row {row!r}: +cache / +infmode / +compile / +head apply to degmix only")
    if variant not in ("", "cache", "infmode", "compile", "head", "head+compile"):
        raise ValueError(f"row {row!r}: unknown variant {variant!r}; use +cache, +infmode, +compile, +head or "
                         "+head+compile")
    compiled = variant.endswith("compile")
    variant = variant.partition("+")[0]  # head+compile: the head-only step, with the head compiled
    impl = impl or args.impls[0]
    torch.manual_seed(args.seed)
    model = build_benchmark_model(args)
    kwargs = {} if args.head == "default" or method == "degmix" else {"head": args.head}
    cfg = apply_tuning(model, method, **kwargs)
    if impl:
        set_deform_impl(model, impl)
    model.to(device)
    images = batch["image"]
    if args.channels_last:
        to_channels_last(model)
        images = channels_last_images(images)
    if compiled:
        compile_head(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    precision = "bf16" if args.bf16 else "no"
    cache = FeatureCache("benchmark", "memory") if variant == "cache" else None
    ids = batch["meta"]["id"]
    if variant == "infmode" and not model.backbone_frozen:
        raise ValueError("degmix+infmode needs the frozen backbone")
    head_feats = model.extract_features(images) if variant == "head" else None  # computed once, outside the step

    def step():
        with autocast(precision, device):
            if cache is not None:
                feats = cache.batch_features(model.extract_features, images, ids)
            elif variant == "infmode":
                feats = frozen_features_inference_mode(model, images)
            elif variant == "head":
                feats = head_feats
            else:
                feats = None
            out = model(images, features=feats)
            loss, _ = criterion(out, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Runner(row, method, cfg.head, model, step, sum(p.numel() for p in params), impl)


# ------------------------------------------------------------------------------------------------ deform impl, sgemm
def set_deform_impl(model, impl: str) -> None:
    """Switch every DeGMix deformable conv of `model` to `impl` (a plain attribute: no parameter changes)."""
    from degmix_tuning.models.deformable_mixer import ChannelDeformableConv

    for m in model.modules():
        if isinstance(m, ChannelDeformableConv):
            m.impl = impl


class Sgemm:
    """Single-thread float32 matmul (SGEMM_N^3), timed once per round: the machine's reference GFLOP/s."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(SGEMM_N, SGEMM_N, generator=g).to(device)
        self.b = torch.randn(SGEMM_N, SGEMM_N, generator=g).to(device)
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        for _ in range(2):
            self.run(record=False)

    def run(self, record: bool = True) -> None:
        threads = self.torch.get_num_threads()
        self.torch.set_num_threads(1)
        try:
            self.sync()
            t0, c0 = time.perf_counter(), time.process_time()
            self.a @ self.b
            self.sync()
            if record:
                self.times.append(time.perf_counter() - t0)
                self.cpu_times.append(time.process_time() - c0)
        finally:
            self.torch.set_num_threads(threads)

    def gflops(self, cpu: bool = False) -> float:
        """Median rate over the recorded runs, from wall time or (cpu=True) from process CPU time."""
        return 2 * SGEMM_N**3 / statistics.median(self.cpu_times if cpu else self.times) / 1e9


@contextmanager
def eager_head(model):
    """Run a head compiled in place (`nn.Module.compile`) eagerly inside the block: same parameters, same
    computation, but every op visible to FlopCounterMode. No-op for an uncompiled head."""
    head = getattr(model, "head", None)
    compiled = getattr(head, "_compiled_call_impl", None)
    if compiled is None:
        yield
        return
    head._compiled_call_impl = None
    try:
        yield
    finally:
        head._compiled_call_impl = compiled


def profile_step(r: Runner, top: int = 18) -> dict:
    """One step of `r` under torch.profiler (CPU time per op) and under FlopCounterMode (FLOPs per op). FLOPs here
    are the counter's own: complete for grid_sample (its deform matmul is a visible conv2d), without the deform
    matmul for torchvision (an op the counter cannot see)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from flops import ensure_cpu_attention_counted

    ensure_cpu_attention_counted()
    with FlopCounterMode(display=False) as counter:
        r.step()
    flops = {str(k).replace(".", "::", 1): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        r.step()
    ev = {e.key: e for e in prof.key_averages()}
    wall = sum(e.self_cpu_time_total for e in ev.values())  # microseconds
    total_flops = sum(flops.values())
    names = sorted(ev, key=lambda k: -ev[k].self_cpu_time_total)[:top]
    names += [k for k in flops if k not in names and k in ev]
    ops = []
    for k in names:
        e = ev[k]
        f = flops.get(k)
        ops.append({"op": k, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
                    "self_share": e.self_cpu_time_total / wall, "total_ms": e.cpu_time_total / 1e3,
                    "flops": f, "flop_share": None if f is None else f / total_flops,
                    "gflops_per_s": None if not f else f / (e.cpu_time_total * 1e3)})
    # incl. time; counted ops do not call each other (torchvision's deform op calls aten::mm: see print_report)
    flop_ms = sum(ev[k].cpu_time_total for k in flops if k in ev) / 1e3
    return {"row": r.name, "step_ms": wall / 1e3, "flops": total_flops, "ops": ops, "flop_ops_ms": flop_ms,
            "flop_ops_gflops_per_s": total_flops / (flop_ms * 1e6) if flop_ms else None}


def layer_ceiling(r: Runner, sgemm: Sgemm, reps: int = 3) -> dict:
    """Every nn.Linear / nn.Conv2d call of one step of `r`, replayed alone: a copy of the layer, a random input of
    the recorded shape (requires_grad, so the input gradient is computed too), forward + backward, on the step's
    thread count, timed in process CPU seconds (as is sgemm here); FLOPs from FlopCounterMode on the replay. Each
    distinct (layer config, input shape) is timed `reps` times (median) in rounds interleaved with sgemm.
    sum(FLOPs) / sum(time) over all calls is what the head would reach if every op without FLOPs (copies, adds,
    norms, activations, sampling, attention glue) took no time.
    """
    import copy

    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    calls: dict = {}

    def hook(module, inputs, _output):
        x = inputs[0]
        key = (repr(module), tuple(x.shape))
        if key not in calls:
            calls[key] = {"module": module, "shape": tuple(x.shape), "calls": 0}
        calls[key]["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in r.model.head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        r.step()
    finally:
        for h in handles:
            h.remove()
    g = torch.Generator().manual_seed(0)
    rows = []
    for key, c in calls.items():
        layer = copy.deepcopy(c["module"]).train()
        x = torch.randn(c["shape"], generator=g).requires_grad_(True)

        def replay(layer=layer, x=x):
            out = layer(x)
            out.backward(torch.ones_like(out))
            layer.zero_grad(set_to_none=True)
            x.grad = None

        replay()
        with FlopCounterMode(display=False) as counter:
            replay()
        rows.append({"layer": key[0].split("(")[0], "config": key[0], "input": c["shape"], "calls": c["calls"],
                     "flops": counter.get_total_flops(), "replay": replay, "times": []})
    for _ in range(reps):  # interleaved with sgemm: one timing of every layer per round
        for row in rows:
            c0 = time.process_time()
            row["replay"]()
            row["times"].append(time.process_time() - c0)
        sgemm.run()
    total_flops = sum(x["flops"] * x["calls"] for x in rows)
    total_s = sum(statistics.median(x["times"]) * x["calls"] for x in rows)
    out = []
    for x in sorted(rows, key=lambda x: -x["flops"] * x["calls"]):
        med = statistics.median(x.pop("times"))
        x.pop("replay")
        out.append({**x, "input": list(x["input"]), "median_s": med, "gflops_per_s": x["flops"] / med / 1e9})
    gflops = total_flops / total_s / 1e9
    sgemm_gflops = sgemm.gflops(cpu=True)
    return {"row": r.name, "layers": out, "flops": total_flops, "seconds": total_s, "gflops_per_s": gflops,
            "sgemm_gflops": sgemm_gflops, "sgemm_fraction": gflops / sgemm_gflops}


# ------------------------------------------------------------------------------------------------ machine
def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "loadavg_start": os.getloadavg(),
    }


def _fmt_ratio(a, b) -> str:
    return "—" if a is None or b in (None, 0) else f"{a / b:.2f}x"


def run(args) -> dict:
    import torch

    from degmix_tuning.data.info import get_dataset_info
    from degmix_tuning.losses import MultiTaskLoss

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = machine_info()
    tasks = args.tasks.split(",")
    criterion = MultiTaskLoss(tasks, get_dataset_info("nyud"))
    batch = make_batch(args, tasks, get_dataset_info("nyud"), device)
    mem = StepMemory(device)
    runners = [make_runner(row, args, batch, criterion, device) for row in args.rows]

    flop_parts = None
    from flops import flops_per_part, train_step_flops

    for r in runners:
        if args.no_flops and "+head" not in r.name:  # the +head row's GFLOP/s needs its FLOPs
            continue
        r.step()  # first call outside the counter fills the +cache row's cache / compiles, like a warm-up step
        with eager_head(r.model):  # a compiled head hides its ops from the counter: count them eagerly
            r.flops = train_step_flops(r.step, r.model) // args.batch  # deform counted with torchvision's op
    degmix = next((r for r in runners if r.method == "degmix"), None)
    if degmix is not None and not args.no_flops:
        flop_parts = flops_per_part(degmix.model, tuple(args.size))

    for r in runners:
        for _ in range(max(args.warmup, 1 if "+compile" in r.name else 0)):
            r.step()
    sgemm = Sgemm(device) if args.head_gflops or args.profile_head else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(args.steps):
        for r in runners:  # interleaved: every round times one step of every method
            before = mem.start()
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            r.step()
            sync()
            r.times.append(time.perf_counter() - t0)
            r.cpu_times.append(time.process_time() - c0)
            r.memory.append(mem.stop(before))
        if sgemm is not None:
            sgemm.run()
    info["loadavg_end"] = os.getloadavg()
    profiles = [profile_step(r) for r in runners if args.profile_head and "+head" in r.name]
    ceilings = [layer_ceiling(r, sgemm) for r in runners
                if args.layer_ceiling and sgemm is not None and r.name.split("@")[0] == "degmix+head"]

    rows = []
    for r in runners:
        med = statistics.median(r.times)
        peak = max((m for m in r.memory if m is not None), default=None)
        gflops = None if r.flops is None else r.flops * args.batch / med / 1e9
        cpu_med = statistics.median(r.cpu_times)
        gflops_cpu = None if r.flops is None else r.flops * args.batch / cpu_med / 1e9
        rows.append({"row": r.name, "method": r.method, "head": r.head, "deform_impl": r.impl,
                     "trainable": r.trainable,
                     "median_step_s": med, "min_step_s": min(r.times), "max_step_s": max(r.times),
                     "images_per_s": args.batch / med, "peak_step_bytes": peak, "train_flops_per_image": r.flops,
                     "gflops_per_s": gflops,
                     "sgemm_fraction": None if gflops is None or sgemm is None else gflops / sgemm.gflops(),
                     "median_step_cpu_s": cpu_med, "gflops_per_cpu_s": gflops_cpu,
                     "sgemm_fraction_cpu": None if gflops_cpu is None or sgemm is None
                     else gflops_cpu / sgemm.gflops(cpu=True),
                     "times": r.times, "cpu_times": r.cpu_times})
    by = {x["row"]: x for x in rows}
    ratios = []
    for suffix in [""] if len(args.impls) == 1 else [f"@{i}" for i in args.impls]:
        for row, ref in RATIOS:
            row, ref = row + suffix, ref + suffix
            if row in by and ref in by:
                ratios.append({"row": row, "ref": ref, "ratio": by[row]["median_step_s"] / by[ref]["median_step_s"]})
    head_sgemm = [{"row": x["row"], "fraction": x["sgemm_fraction"], "fraction_cpu": x["sgemm_fraction_cpu"],
                   "limit": HEAD_SGEMM_TARGET, "pass": x["sgemm_fraction"] >= HEAD_SGEMM_TARGET}
                  for x in rows if "+head" in x["row"] and x["sgemm_fraction"] is not None]
    return {"args": {k: v for k, v in vars(args).items() if k != "rows"}, "rows_run": args.rows, "machine": info,
            "device": device, "memory_kind": mem.kind, "results": rows, "ratios": ratios,
            "flops_per_part": flop_parts, "sgemm_gflops_1thread": sgemm and sgemm.gflops(),
            "sgemm_times": sgemm and sgemm.times,
            "sgemm_gflops_1thread_cpu": sgemm and sgemm.gflops(cpu=True), "sgemm_cpu_times": sgemm and sgemm.cpu_times,
            "head_sgemm_targets": head_sgemm, "profiles": profiles,
            "layer_ceilings": ceilings}


def print_report(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 170))
    a, m = res["args"], res["machine"]
    con.print(f"[bold]machine[/]: {m['nproc']} cores, {m['cpu']} ({m['cpu_capability']}), torch {m['torch']}, "
              f"{m['threads']} threads; load average {m['loadavg_start'][0]:.2f} at start, "
              f"{m['loadavg_end'][0]:.2f} at end")
    con.print(f"[bold]setup[/]: {a['preset'] or 'degmix_tuning_' + a['backbone'] + '_nyud'}, input "
              f"{a['size'][0]}x{a['size'][1]}, batch {a['batch']}, tasks {a['tasks']}, interaction "
              f"{a['interaction'] or 'preset'}, bf16={a['bf16']}, channels_last={a['channels_last']}, "
              f"{a['warmup']} warm-up + {a['steps']} timed steps per row (interleaved), memory = {res['memory_kind']}")
    by = {r["row"]: r for r in res["results"]}
    sgemm = res["sgemm_gflops_1thread"]
    if sgemm:
        con.print(f"[bold]sgemm[/]: {SGEMM_N}^3 float32 matmul on 1 thread, median of {len(res['sgemm_times'])} "
                  f"(one per round): {sgemm:.1f} GFLOP/s by wall time, {res['sgemm_gflops_1thread_cpu']:.1f} by "
                  "process CPU time (the CPU-time columns hold up better on a shared machine)")
    t = Table(title="train step, side by side")
    cols = ["row", "head", "trainable", "median s/step", "min..max s", "images/s", "vs full", "vs lora",
            "step memory MB", "mem vs full", "train GFLOPs/img", "FLOPs vs full"]
    for col in cols + (["GFLOP/s", "of sgemm", "cpu s/step", "of sgemm (cpu)"] if sgemm else []):
        t.add_column(col, justify="left" if col in ("row", "head") else "right", no_wrap=col == "row")
    for r in res["results"]:
        peak = r["peak_step_bytes"]
        suffix = "@" + r["row"].split("@")[1] if "@" in r["row"] else ""
        full, lora = by.get("full" + suffix), by.get("lora" + suffix)  # the references run with the same impl
        extra = [] if not sgemm else ["—" if r["gflops_per_s"] is None else f"{r['gflops_per_s']:.1f}",
                                      "—" if r["sgemm_fraction"] is None else f"{r['sgemm_fraction']:.0%}",
                                      f"{r['median_step_cpu_s']:.3f}",
                                      "—" if r["sgemm_fraction_cpu"] is None else f"{r['sgemm_fraction_cpu']:.0%}"]
        t.add_row(
            r["row"], r["head"], f"{r['trainable']:,}", f"{r['median_step_s']:.3f}",
            f"{r['min_step_s']:.2f}..{r['max_step_s']:.2f}", f"{r['images_per_s']:.2f}",
            _fmt_ratio(r["median_step_s"], full and full["median_step_s"]),
            _fmt_ratio(r["median_step_s"], lora and lora["median_step_s"]),
            "—" if peak is None else f"{peak / 2**20:.0f}",
            _fmt_ratio(peak, full and full["peak_step_bytes"]),
            "—" if r["train_flops_per_image"] is None else f"{r['train_flops_per_image'] / 1e9:.1f}",
            _fmt_ratio(r["train_flops_per_image"], full and full["train_flops_per_image"]),
            *extra,
        )
    con.print(t)
    impls = a["impls"]
    if len(impls) > 1:
        it = Table(title=f"deform_impl side by side (median s/step; ratio to {impls[0]})")
        it.add_column("row")
        for i in impls:
            it.add_column(i, justify="right")
        for i in impls[1:]:
            it.add_column(f"{i} / {impls[0]}", justify="right")
            it.add_column("median of per-round ratios", justify="right")
            it.add_column("min / min", justify="right")
        for base in dict.fromkeys(r["row"].split("@")[0] for r in res["results"]):
            rs = [by[f"{base}@{i}"] for i in impls]
            ratios = []
            for x in rs[1:]:  # each round ran both steps back to back: its ratio sees the same machine load
                ratios += [f"{x['median_step_s'] / rs[0]['median_step_s']:.2f}x",
                           f"{statistics.median(t / t0 for t, t0 in zip(x['times'], rs[0]['times'])):.2f}x",
                           f"{x['min_step_s'] / rs[0]['min_step_s']:.2f}x"]
            it.add_row(base, *[f"{x['median_step_s']:.3f}" for x in rs], *ratios)
        con.print(it)
    if res["flops_per_part"]:
        p = res["flops_per_part"]
        ft = Table(title="forward FLOPs per image of the degmix model, per part (deform_1x1 analytic)")
        for col in ("part", "GFLOPs", "GMACs", "share"):
            ft.add_column(col, justify="left" if col == "part" else "right")
        for k, v in p.items():
            ft.add_row(k, f"{v / 1e9:.2f}", f"{v / 2e9:.2f}", f"{v / p['total']:.0%}")
        con.print(ft)
    for tg in res["ratios"]:
        con.print(f"{tg['row']} step time = {tg['ratio']:.2f}x {tg['ref']}")
    if sgemm and a["threads"] != 1:
        con.print(f"[yellow]note[/]: the steps ran on {m['threads']} threads, sgemm on 1: use --threads 1 to compare")
    for tg in res["head_sgemm_targets"]:
        tag = "[green]PASS[/]" if tg["pass"] else "[red]FAIL[/]"
        con.print(f"{tag} {tg['row']} reaches {tg['fraction']:.0%} of 1-thread sgemm GFLOP/s "
                  f"({tg['fraction_cpu']:.0%} by CPU time; target >= {tg['limit']:.0%})")
    for p in res["profiles"]:
        pt = Table(title=f"profile of one {p['row']} step: {p['step_ms']:.0f} ms of op self time, "
                         f"{p['flops'] / 1e9:.1f} GFLOPs counted (top ops by self time, then every op with FLOPs)")
        for col in ("op", "calls", "self ms", "share of time", "incl. ms", "GFLOPs", "share of FLOPs", "GFLOP/s"):
            pt.add_column(col, justify="left" if col == "op" else "right")
        for o in p["ops"]:
            pt.add_row(o["op"][:60], str(o["calls"]), f"{o['self_ms']:.1f}", f"{o['self_share']:.1%}",
                       f"{o['total_ms']:.1f}", "—" if o["flops"] is None else f"{o['flops'] / 1e9:.2f}",
                       "—" if o["flop_share"] is None else f"{o['flop_share']:.1%}",
                       "—" if o["gflops_per_s"] is None else f"{o['gflops_per_s']:.1f}")
        con.print(pt)
        con.print("incl. ms: the op's time with the ops it calls (GFLOP/s uses it); self ms excludes them")
        if p["flop_ops_ms"]:
            con.print(f"ops with FLOPs (matmul, conv, attention): {p['flop_ops_ms']:.0f} ms = "
                      f"{p['flop_ops_ms'] / p['step_ms']:.0%} of op time at {p['flop_ops_gflops_per_s']:.1f} GFLOP/s; "
                      f"every other op: {p['step_ms'] - p['flop_ops_ms']:.0f} ms, no counted FLOPs")
        if p["row"].endswith("@torchvision") or res["args"]["deform_impl"] == "torchvision":
            con.print("torchvision's deform op is invisible to the FLOP counter, but its internal aten::mm calls are "
                      "profiled: aten::mm time includes them, its FLOPs do not")
    for c in res.get("layer_ceilings", []):
        by_row = {x["row"]: x for x in res["results"]}
        step = by_row.get(c["row"])
        lt = Table(title=f"{c['row']}: every Linear/Conv2d call replayed alone (forward + backward incl. input "
                         f"gradient; CPU time), sgemm {c['sgemm_gflops']:.1f} GFLOP/s (CPU time) in the same rounds")
        for col in ("layer", "input", "calls", "GFLOPs (all calls)", "ms per call", "GFLOP/s", "of sgemm"):
            lt.add_column(col, justify="left" if col in ("layer", "input") else "right")
        for x in c["layers"]:
            lt.add_row(x["config"][:70], "x".join(map(str, x["input"])), str(x["calls"]),
                       f"{x['flops'] * x['calls'] / 1e9:.2f}", f"{x['median_s'] * 1e3:.1f}",
                       f"{x['gflops_per_s']:.1f}", f"{x['gflops_per_s'] / c['sgemm_gflops']:.0%}")
        con.print(lt)
        line = (f"all Linear/Conv2d layers of the head, each alone: {c['flops'] / 1e9:.1f} GFLOPs in "
                f"{c['seconds']:.2f} s = {c['gflops_per_s']:.1f} GFLOP/s = "
                f"[bold]{c['sgemm_fraction']:.0%} of sgemm[/] (the ceiling if every other op took no time)")
        if step and step["train_flops_per_image"]:
            line += (f"; the step counts {step['train_flops_per_image'] * a['batch'] / 1e9:.1f} GFLOPs and takes "
                     f"{step['median_step_cpu_s']:.2f} s CPU")
        con.print(line)


def main(argv=None) -> int:
    args = parse_args(argv)
    if (os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD and sys.platform.startswith("linux")
            and os.environ.get("DEGMIX_BENCH_NO_REEXEC") != "1"):
        # freed tensors must leave the RSS for the step-memory column: pin glibc's mmap threshold, re-run ourselves
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MMAP_THRESHOLD, DEGMIX_BENCH_NO_REEXEC="1")
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:])], env=env)
    res = run(args)
    print_report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
