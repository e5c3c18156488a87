"""Train-step time, images/s, step memory and FLOPs of tuning methods, side by side in one process.

Every method is built from the same preset with the same seed, trained on the same random batch with the engine's
recipe (SGD 0.9 momentum, MultiTaskLoss), warmed up, then timed in interleaved rounds (round i runs one step of
every method), so machine load hits all methods alike; the median step time is reported, with ratios to `full`.

Rows: the tuning methods of --methods, plus "degmix+cache" with --cache (the head-only step on features from the
in-memory `FeatureCache`, digest checks included), "degmix+infmode" with --inference-mode (backbone under
torch.inference_mode), "degmix+compile" with --compile-head (head compiled in place; the compile happens in the
first, untimed call).

Memory (CPU): the peak resident set size during one step minus the RSS just before it (Linux VmHWM, reset through
/proc/self/clear_refs before each step; glibc's mmap threshold is pinned to 64 KiB so freed tensors leave the RSS).
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
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

MMAP_THRESHOLD = "65536"
TARGETS = (  # (row, reference row, max ratio): the issue's targets for the frozen-backbone path
    ("degmix", "full", 0.45),
    ("degmix", "lora", 0.60),
    ("degmix+cache", "full", 0.15),
)


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
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    rows = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.cache and "degmix+cache" not in rows:
        rows.append("degmix+cache")
    if args.inference_mode and "degmix+infmode" not in rows:
        rows.append("degmix+infmode")
    if args.compile_head and "degmix+compile" not in rows:
        rows.append("degmix+compile")
    args.rows = rows
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        ap.error("--steps and --batch must be >= 1 and --warmup >= 0")
    return args


# ------------------------------------------------------------------------------------------------ memory
def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class StepMemory:
    """Peak extra memory of one step: CUDA allocator peak, or Linux VmHWM - VmRSS around the step."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = device
        self.kind = "cuda max_memory_allocated" if device == "cuda" else "RSS peak (VmHWM) - RSS before step"
        self.available = device == "cuda" or (_proc_status_kb("VmHWM") is not None
                                              and os.access("/proc/self/clear_refs", os.W_OK))

    def start(self) -> int:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()
            return self.torch.cuda.memory_allocated()
        if not self.available:
            return 0
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return (_proc_status_kb("VmRSS") or 0) * 1024

    def stop(self, before: int) -> int | None:
        if self.device == "cuda":
            return self.torch.cuda.max_memory_allocated() - before
        if not self.available:
            return None
        return (_proc_status_kb("VmHWM") or 0) * 1024 - before


# ------------------------------------------------------------------------------------------------ runners
@dataclass
class Runner:
    name: str
    method: str
    head: str
    model: object
    step: object
    trainable: int
    times: list = field(default_factory=list)
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

    method, _, variant = row.partition("+")
    if variant and method != "degmix":
        raise ValueError(f"row {row!r}: +cache / +infmode / +compile apply to degmix only")
    if variant not in ("", "cache", "infmode", "compile"):
        raise ValueError(f"row {row!r}: unknown variant {variant!r}; use +cache, +infmode or +compile")
    torch.manual_seed(args.seed)
    model = build_benchmark_model(args)
    kwargs = {} if args.head == "default" or method == "degmix" else {"head": args.head}
    cfg = apply_tuning(model, method, **kwargs)
    model.to(device)
    images = batch["image"]
    if args.channels_last:
        to_channels_last(model)
        images = channels_last_images(images)
    if variant == "compile":
        compile_head(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    precision = "bf16" if args.bf16 else "no"
    cache = FeatureCache("benchmark", "memory") if variant == "cache" else None
    ids = batch["meta"]["id"]
    if variant == "infmode" and not model.backbone_frozen:
        raise ValueError("degmix+infmode needs the frozen backbone")

    def step():
        with autocast(precision, device):
            if cache is not None:
                feats = cache.batch_features(model.extract_features, images, ids)
            elif variant == "infmode":
                feats = frozen_features_inference_mode(model, images)
            else:
                feats = None
            out = model(images, features=feats)
            loss, _ = criterion(out, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Runner(row, method, cfg.head, model, step, sum(p.numel() for p in params))


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
    if not args.no_flops:
        from flops import flops_per_part, train_step_flops

        for r in runners:
            r.step()  # first call outside the counter fills the +cache row's cache / compiles, like a warm-up step
            if not r.name.endswith("+compile"):  # a compiled head hides its ops from the counter
                r.flops = train_step_flops(r.step, r.model) // args.batch
        degmix = next((r for r in runners if r.method == "degmix"), None)
        if degmix is not None:
            flop_parts = flops_per_part(degmix.model, tuple(args.size))

    for r in runners:
        for _ in range(max(args.warmup, 1 if r.name.endswith("+compile") else 0)):
            r.step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(args.steps):
        for r in runners:  # interleaved: every round times one step of every method
            before = mem.start()
            sync()
            t0 = time.perf_counter()
            r.step()
            sync()
            r.times.append(time.perf_counter() - t0)
            r.memory.append(mem.stop(before))
    info["loadavg_end"] = os.getloadavg()

    rows = []
    for r in runners:
        med = statistics.median(r.times)
        peak = max((m for m in r.memory if m is not None), default=None)
        rows.append({"row": r.name, "method": r.method, "head": r.head, "trainable": r.trainable,
                     "median_step_s": med, "min_step_s": min(r.times), "max_step_s": max(r.times),
                     "images_per_s": args.batch / med, "peak_step_bytes": peak, "train_flops_per_image": r.flops,
                     "times": r.times})
    by = {x["row"]: x for x in rows}
    targets = []
    for row, ref, limit in TARGETS:
        if row in by and ref in by:
            ratio = by[row]["median_step_s"] / by[ref]["median_step_s"]
            targets.append({"row": row, "ref": ref, "limit": limit, "ratio": ratio, "pass": ratio <= limit})
        else:
            targets.append({"row": row, "ref": ref, "limit": limit, "ratio": None, "pass": None})
    return {"args": {k: v for k, v in vars(args).items() if k != "rows"}, "rows_run": args.rows, "machine": info,
            "device": device, "memory_kind": mem.kind, "results": rows, "targets": targets,
            "flops_per_part": flop_parts}


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
    full, lora = by.get("full"), by.get("lora")
    t = Table(title="train step, side by side")
    for col in ("row", "head", "trainable", "median s/step", "min..max s", "images/s", "vs full", "vs lora",
                "step memory MB", "mem vs full", "train GFLOPs/img", "FLOPs vs full"):
        t.add_column(col, justify="left" if col in ("row", "head") else "right")
    for r in res["results"]:
        peak = r["peak_step_bytes"]
        t.add_row(
            r["row"], r["head"], f"{r['trainable']:,}", f"{r['median_step_s']:.3f}",
            f"{r['min_step_s']:.2f}..{r['max_step_s']:.2f}", f"{r['images_per_s']:.2f}",
            _fmt_ratio(r["median_step_s"], full and full["median_step_s"]),
            _fmt_ratio(r["median_step_s"], lora and lora["median_step_s"]),
            "—" if peak is None else f"{peak / 2**20:.0f}",
            _fmt_ratio(peak, full and full["peak_step_bytes"]),
            "—" if r["train_flops_per_image"] is None else f"{r['train_flops_per_image'] / 1e9:.1f}",
            _fmt_ratio(r["train_flops_per_image"], full and full["train_flops_per_image"]),
        )
    con.print(t)
    if res["flops_per_part"]:
        p = res["flops_per_part"]
        ft = Table(title="forward FLOPs per image of the degmix model, per part (deform_1x1 analytic)")
        for col in ("part", "GFLOPs", "GMACs", "share"):
            ft.add_column(col, justify="left" if col == "part" else "right")
        for k, v in p.items():
            ft.add_row(k, f"{v / 1e9:.2f}", f"{v / 2e9:.2f}", f"{v / p['total']:.0%}")
        con.print(ft)
    for tg in res["targets"]:
        if tg["ratio"] is None:
            con.print(f"[yellow]SKIP[/] {tg['row']} <= {tg['limit']}x {tg['ref']}: row not run")
        else:
            tag = "[green]PASS[/]" if tg["pass"] else "[red]FAIL[/]"
            con.print(f"{tag} {tg['row']} step time {tg['ratio']:.2f}x {tg['ref']} (target <= {tg['limit']}x)")


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
