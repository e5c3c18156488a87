"""Training protocols, the frozen-weights guard, presets' tuning methods and --print-config, through the recipe CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.protocols import get_protocol, protocol_differences
from degmix_tuning.training.recipe import build_parser, config_from_args, main as recipe_main


@pytest.fixture(scope="module")
def nyud_root(tmp_path_factory) -> Path:
    """A small NYUD-v2 root in the real on-disk layout: 'real data' to the recipe (--data-root)."""
    from degmix_tuning.data.synthetic.writer import write_synthetic_dataset

    root = tmp_path_factory.mktemp("nyud") / "NYUDv2"
    write_synthetic_dataset(root, n=10, flavour="nyud", seed=0, size=(48, 64))
    return root


def _cfg(argv: list[str], dataset: str = "nyud") -> ExperimentConfig:
    return config_from_args(build_parser(dataset).parse_args(argv), dataset)


def _printed(argv: list[str], capsys) -> dict:
    assert recipe_main("nyud", [*argv, "--print-config"]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def test_the_default_protocol_is_the_official_recipe(nyud_root):
    cfg = _cfg(["--data-root", str(nyud_root), "--pretrained"])
    assert cfg.protocol == "degmix"
    assert cfg.model.head.interaction == "official"
    assert cfg.train.loss_normalization == "image"
    assert (cfg.train.optimizer, cfg.train.schedule, cfg.train.lr, cfg.train.max_steps) == ("sgd", "poly", 1e-3, 40000)
    assert (cfg.train.batch_size, cfg.train.sync_bn, cfg.train.mixed_precision) == (8, True, "no")
    assert protocol_differences(cfg) == {}  # nothing on the command line differs from the protocol


def test_explicit_flags_override_the_protocol_and_are_recorded(nyud_root, capsys):
    printed = _printed(["--data-root", str(nyud_root), "--random-backbone", "--lr", "0.02", "--interaction", "pixel",
                        "--backbone", "tiny_swin"], capsys)
    overrides = printed["config"]["protocol_overrides"]
    assert overrides == {"model.head.interaction": ["official", "pixel"], "train.lr": [0.001, 0.02]}
    assert printed["config"]["random_backbone"] is True
    assert printed["effective_lr"] == 0.02


def test_mtlora_protocol_values_and_the_effective_lr(nyud_root, capsys):
    printed = _printed(["--data-root", str(nyud_root), "--random-backbone", "--protocol", "mtlora", "--backbone",
                        "tiny_swin", "--batch-size", "4"], capsys)
    cfg = printed["config"]
    protocol = get_protocol("mtlora")
    assert cfg["protocol"] == "mtlora"
    assert cfg["train"]["optimizer"] == "adamw" and cfg["train"]["schedule"] == "cosine"
    assert cfg["train"]["loss_normalization"] == "batch" and cfg["data"]["pipeline"] == "mtlora"
    # base lr scaled by batch / 512 (MTLoRA's linear scaling), here at batch 4
    assert printed["effective_lr"] == pytest.approx(protocol.settings["train.lr"] * 4 / 512, rel=1e-12)
    # epochs -> optimizer steps: the 10-scene root splits into train ids; steps per epoch = train // batch
    n_train = len((nyud_root / "gt_sets" / "train.txt").read_text().split())
    assert cfg["train"]["max_steps"] == protocol.settings["train.epochs"] * (n_train // 4)
    assert "train.batch_size" in cfg["protocol_overrides"]
    if not torch.cuda.is_available():  # fp16 AMP needs CUDA: said, and recorded as an override
        assert cfg["train"]["mixed_precision"] == "no"
        assert cfg["protocol_overrides"]["train.mixed_precision"] == ["fp16", "no"]


def test_max_steps_over_an_epoch_protocol_wins(nyud_root):
    cfg = _cfg(["--data-root", str(nyud_root), "--pretrained", "--protocol", "mtlora", "--max-steps", "7"])
    assert cfg.train.epochs is None and cfg.train.max_steps == 7


def test_random_frozen_weights_on_real_data_are_refused_in_one_line(nyud_root, capsys):
    code = recipe_main("nyud", ["--data-root", str(nyud_root), "--print-config"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    for needle in ("--checkpoint-path", "--pretrained", "--random-backbone",
                   "upernet_swin_tiny_patch4_window7_512x512_160k_ade20k_pretrain_224x224_1K_20210531_112542-e380ad3e"):
        assert needle in err
    # every freezing method is refused, full fine-tuning is not (its weights all train)
    assert recipe_main("nyud", ["--data-root", str(nyud_root), "--tuning", "lora", "--print-config"]) == 2
    capsys.readouterr()
    printed = _printed(["--data-root", str(nyud_root), "--tuning", "full", "--backbone", "tiny_swin"], capsys)
    assert printed["backbone_weights"]["source"] == "random" and printed["backbone_weights"]["frozen"] is False


def test_random_backbone_opts_in_and_is_recorded(nyud_root, capsys):
    printed = _printed(["--data-root", str(nyud_root), "--random-backbone", "--backbone", "tiny_swin"], capsys)
    assert printed["config"]["random_backbone"] is True
    assert printed["backbone_weights"]["source"] == "random" and printed["backbone_weights"]["frozen"] is True


def test_a_checkpoint_file_is_recorded_with_its_sha256(nyud_root, tmp_path, capsys):
    import hashlib

    from degmix_tuning.backbones import create_backbone

    path = tmp_path / "tiny_swin.pth"
    torch.save(create_backbone("tiny_swin").state_dict(), path)
    printed = _printed(["--data-root", str(nyud_root), "--backbone", "tiny_swin", "--checkpoint-path", str(path)],
                       capsys)
    weights = printed["backbone_weights"]
    assert weights["source"] == "file" and weights["file"] == str(path.absolute())
    assert weights["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_synthetic_demo_is_unchanged(capsys):
    cfg = _cfg(["--synthetic"])
    # no weights named and no refusal: the demo keeps its packaged pretrained backbone and its measured settings
    assert cfg.model.backbone == "swin_synthetic" and cfg.model.pretrained
    assert cfg.model.head.interaction == "global" and cfg.train.loss_normalization == "batch"
    assert (cfg.train.max_steps, cfg.train.batch_size, cfg.train.lr) == (300, 4, 0.01)


@pytest.mark.parametrize("preset, tuning", [("degmix_swin_t_nyud", "full"), ("degmix_tuning_swin_t_nyud", "degmix"),
                                            ("degmix_tuning_tiny_nyud", "degmix")])
def test_presets_carry_their_tuning_method(preset, tuning):
    assert _cfg(["--synthetic", "--preset", preset]).tuning == tuning
    assert _cfg(["--synthetic", "--preset", preset, "--tuning", "lora"]).tuning == "lora"  # unless --tuning says


def test_a_run_records_its_protocol_and_weights(tmp_path, synthetic_cache):
    from degmix_tuning.training.engine import train

    out = tmp_path / "run"
    cfg = ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "data.synthetic=true", "data.synthetic_n=24",
        "data.synthetic_size=48,64", "data.num_workers=0", "train.batch_size=4", "train.max_steps=2",
        "train.eval_every=0", "train.checkpoint_every=0", "train.eval_at_start=false", f"train.output_dir={out}",
        "train.max_eval_batches=1",
    ])
    train(cfg, show_progress=False)
    summary = json.loads((out / "summary.json").read_text())
    saved = json.loads((out / "config.json").read_text())
    assert summary["protocol"] == saved["protocol"] == "degmix"
    assert summary["protocol_overrides"] == saved["protocol_overrides"]
    assert saved["protocol_overrides"]["train.max_steps"] == [40000, 2]
    assert summary["backbone_weights"]["source"] == "random" and len(summary["backbone_weights"]["weights_sha256"]) == 64
    assert set(summary["headline_metrics"]) == {"semseg", "depth"}
    start = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert start["backbone_weights"] == summary["backbone_weights"]  # known from the start, before any step


def test_select_best_reports_the_best_evaluation_by_delta_m(tmp_path, synthetic_cache):
    from degmix_tuning.metrics.delta_m import delta_m
    from degmix_tuning.training.checkpoint import read_adapter
    from degmix_tuning.training.engine import train

    out = tmp_path / "best"
    cfg = ExperimentConfig().override([
        "model.backbone=tiny_swin", "model.head.dim=32", "data.synthetic=true", "data.synthetic_n=24",
        "data.synthetic_size=48,64", "data.num_workers=0", "train.batch_size=4", "train.max_steps=4", "train.lr=0.05",
        "train.eval_every=1", "train.checkpoint_every=0", "train.eval_at_start=false", f"train.output_dir={out}",
        "train.select=best", "train.max_eval_batches=1",
    ])
    train(cfg, show_progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    first = rows[0]["metrics"]
    scores = {r["step"]: delta_m(r["metrics"], first) for r in rows}
    best_step = max(scores, key=lambda s: (scores[s], -s))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selected"]["step"] == best_step
    assert summary["selected"]["delta_m"] == pytest.approx(scores[best_step], abs=1e-12)
    assert summary["headline_metrics"]["depth"]["rmse"] == rows[[r["step"] for r in rows].index(best_step)][
        "metrics"]["depth"]["rmse"]
    _, meta = read_adapter(out / "adapter_best.safetensors")
    assert meta["step"] == best_step


def test_best_evaluation_uses_the_protocol_headline_keys():
    from degmix_tuning.training.selection import BestEvaluation

    def m(miou, maxf, pim):
        return {"semseg": {"miou": miou}, "sal": {"maxf": maxf, "per_image_miou": pim}}

    best = BestEvaluation("mtlora")  # saliency is ranked by per_image_miou, not maxf
    assert best.offer(1, m(0.50, 0.80, 0.50))
    assert best.offer(2, m(0.50, 0.70, 0.60))  # maxf fell, per-image mIoU rose: better under mtlora
    assert not best.offer(3, m(0.52, 0.90, 0.55))  # +4 % semseg, -8.3 % saliency against the first evaluation
    assert not best.offer(4, m(0.50, 0.70, 0.60))  # a tie keeps the earlier evaluation
    assert best.summary()["step"] == 2
    official = BestEvaluation("degmix")  # the same sequence ranked by maxf
    for step, metrics in enumerate([m(0.50, 0.80, 0.50), m(0.50, 0.70, 0.60), m(0.52, 0.90, 0.55)], start=1):
        official.offer(step, metrics)
    assert official.summary()["step"] == 3


def test_best_is_ranked_against_the_published_single_task_row_in_our_units():
    from degmix_tuning.training.selection import published_reference

    ref, source = published_reference("swin_t", "pascal", ("semseg", "human_parts", "sal", "normals"))
    expected = {"semseg": {"miou": 0.6721}, "human_parts": {"miou": 0.6193}, "sal": {"per_image_miou": 0.6235},
                "normals": {"mean_angle": 17.97}}
    assert ref.keys() == expected.keys()
    for task, metric in expected.items():
        assert ref[task].keys() == metric.keys() and all(ref[task][k] == pytest.approx(v, rel=1e-12)
                                                         for k, v in metric.items())
    assert "Single-task" in source
    assert published_reference("tiny_swin", "nyud", ("semseg",)) == (None, "the first evaluation")


def test_every_protocol_value_names_its_source_and_the_readme_shows_the_table():
    from degmix_tuning.training.protocols import list_protocols, protocol_table

    for name in list_protocols():
        protocol = get_protocol(name)
        assert set(protocol.sources) == set(protocol.settings), name
        ExperimentConfig().override([f"{k}={json.dumps(v)}" for k, v in protocol.settings.items()])  # all valid
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert protocol_table() in readme  # `python -c "...print(protocol_table())"` regenerates it


def test_an_mtlora_protocol_run_end_to_end(tmp_path, synthetic_cache, capsys):
    """AdamW + warm-up/cosine counted in epochs, the MTLoRA resize pipeline, evaluation every epoch, best selected."""
    import math

    out = tmp_path / "mtlora"
    code = recipe_main("nyud", [
        "--synthetic", "--protocol", "mtlora", "--backbone", "tiny_swin", "--head-dim", "32", "--batch-size", "4",
        "--lr", "0.05", "--output-dir", str(out), "--no-progress", "--set", "data.synthetic_n=24",
        "--set", "data.synthetic_size=48,64", "--set", "data.crop_size=40,56", "--set", "data.num_workers=0",
        "--set", "train.epochs=2", "--set", "train.warmup_epochs=1", "--set", "train.eval_every_epochs=1",
        "--set", "train.log_every=1", "--set", "train.eval_at_start=false", "--set", "train.checkpoint_every=0",
        "--set", "train.warmup_lr=0.0005", "--set", "train.min_lr=0.005",
    ])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    n_train = 24 - round(24 * 0.25)  # the synthetic val fraction
    per_epoch = n_train // 4
    assert saved["train"]["max_steps"] == 2 * per_epoch and summary["step"] == 2 * per_epoch
    assert summary["selected"]["rule"].startswith("best delta_m")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [per_epoch, 2 * per_epoch]  # every epoch
    # the logged lr after step s is the lr of step s+1: timm's warm-up + cosine at update max(s - 1, 0)
    scale = 4 / 512
    peak, warm, low = 0.05 * scale, 0.0005 * scale, 0.005 * scale
    total, warmup = 2 * per_epoch, per_epoch

    def schedule(t):
        if t < warmup:
            return warm + (peak - warm) * t / warmup
        return low + 0.5 * (peak - low) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))

    logged = {}
    for line in (out / "log.csv").read_text().splitlines()[1:]:
        step, key, value = line.split(",")
        if key == "train/lr":
            logged[int(step)] = float(value)
    assert sorted(logged) == list(range(1, total + 1))
    for s, lr in logged.items():
        assert lr == pytest.approx(schedule(max(s - 1, 0)), rel=1e-9), s
    # evaluation at the resized 40x56: every val image was resized, none refused for being larger than the crop
    assert summary["headline_metrics"]["semseg"]["miou"] is not None


def test_mtlora_evaluates_after_epochs_1_6_11_and_at_the_end(nyud_root):
    """MTLoRA validates after 0-based epochs 0, 5, 10, ... (`epoch % 5 == 0`) and once more at the end: after epochs
    1, 6, 11, ... counted from 1. The derived steps reproduce that set exactly."""
    cfg = _cfg(["--data-root", str(nyud_root), "--pretrained", "--protocol", "mtlora", "--batch-size", "2",
                "--set", "train.epochs=13"])
    from degmix_tuning.training.engine import resolve_run_length

    tc = resolve_run_length(cfg).train
    n_train = len((nyud_root / "gt_sets" / "train.txt").read_text().split())
    per_epoch = n_train // 2
    evals = [s for s in range(1, tc.max_steps + 1) if tc.is_eval_step(s)]
    assert evals == [per_epoch * e for e in (1, 6, 11, 13)]
    assert (tc.eval_offset, tc.eval_every) == (per_epoch, 5 * per_epoch)
    explicit = resolve_run_length(_cfg(["--data-root", str(nyud_root), "--pretrained", "--protocol", "mtlora",
                                        "--batch-size", "2", "--set", "train.epochs=13", "--eval-every", "4"])).train
    assert [s for s in range(1, 13) if explicit.is_eval_step(s)] == [4, 8, 12]  # steps given: no epoch offset


def test_an_epoch_counts_optimizer_steps_of_accumulated_batches(nyud_root):
    """With accumulation 2 an optimizer step eats 2 batches: an epoch has half as many (MTLoRA's
    `len(loader) // ACCUMULATION_STEPS`), so 300 epochs are not run twice over."""
    from degmix_tuning.training.engine import resolve_run_length

    n_train = len((nyud_root / "gt_sets" / "train.txt").read_text().split())
    base = ["--data-root", str(nyud_root), "--pretrained", "--protocol", "mtlora", "--batch-size", "2"]
    one = resolve_run_length(_cfg(base)).train
    two = resolve_run_length(_cfg([*base, "--gradient-accumulation-steps", "2"])).train
    assert one.max_steps == 300 * (n_train // 2) and two.max_steps == 300 * (n_train // 2 // 2)


def test_mtlora_accumulation_adds_the_micro_batch_gradients(tmp_path, synthetic_cache):
    """MTLoRA's loop never divides the loss by the accumulation steps: one step with accumulation 2 under `sum` at lr
    x equals `mean` at lr 2x (plain SGD), and differs from `mean` at lr x."""
    from safetensors.torch import load_file

    def adapter(name, accumulation, lr):
        out = tmp_path / name
        code = recipe_main("nyud", [
            "--synthetic", "--backbone", "tiny_swin", "--head-dim", "16", "--batch-size", "2", "--lr", str(lr),
            "--max-steps", "1", "--gradient-accumulation-steps", "2", "--output-dir", str(out), "--no-progress",
            "--set", "data.synthetic_n=8", "--set", "data.synthetic_size=48,64", "--set", "data.num_workers=0",
            "--set", "train.momentum=0", "--set", "train.weight_decay=0", "--set", "train.eval_at_start=false",
            "--set", f"train.accumulation={accumulation}", "--set", "train.max_eval_batches=1"])
        assert code == 0
        return load_file(out / "adapter.safetensors")

    summed, mean_double = adapter("sum", "sum", 0.01), adapter("mean2", "mean", 0.02)
    mean = adapter("mean", "mean", 0.01)
    float_keys = [k for k, v in summed.items() if v.is_floating_point() and "running" not in k]
    assert max((summed[k] - mean_double[k]).abs().max().item() for k in float_keys) < 1e-6
    assert max((summed[k] - mean[k]).abs().max().item() for k in float_keys) > 1e-4


def test_mtlora_weighs_edge_positives_as_mtlora_does(nyud_root):
    """MTLoRA's edge loss uses pos_weight 0.95 on every dataset; the DeMTG recipe keeps NYUD's 0.8."""
    from degmix_tuning.data.info import get_dataset_info
    from degmix_tuning.training.engine import build_criterion

    tasks = ["semseg", "edge"]
    info = get_dataset_info("nyud")
    for protocol, expected in (("degmix", 0.8), ("mtlora", 0.95)):
        cfg = _cfg(["--data-root", str(nyud_root), "--pretrained", "--protocol", protocol])
        assert build_criterion(cfg.train, tasks, info).overrides["edge"] == {"pos_weight": expected}
    cfg = _cfg(["--data-root", str(nyud_root), "--pretrained", "--protocol", "mtlora", "--set",
                "train.edge_pos_weight=null"])
    assert build_criterion(cfg.train, tasks, info).overrides["edge"] == {"pos_weight": 0.8}
