"""`degmix-tuning compare` on tiny configs: every method learns, the table equals the run folders, Δm follows its
formula, an interrupted comparison resumes to the same result, launched runs equal in-process ones."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from degmix_tuning.cli import main
from degmix_tuning.commands.compare import DEFAULT_METHODS

METHODS = DEFAULT_METHODS.split(",")
TINY = ["--synthetic", "--backbone", "tiny_swin", "--head-dim", "32", "--lr", "0.02", "--no-progress",
        "--set", "data.synthetic_n=24", "--set", "data.synthetic_size=32,48", "--set", "data.num_workers=0",
        "--set", "train.eval_batch_size=6", "--set", "train.eval_every=0", "--set", "train.log_every=1"]
STEPS = 20


def compare(out: Path, *extra: str) -> int:
    return main(["compare", "--out", str(out), *TINY, *extra])


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def logged(run_dir: Path, key: str) -> list[float]:
    rows = [r.split(",") for r in (run_dir / "log.csv").read_text().splitlines()[1:]]
    return [float(v) for step, k, v in sorted(rows, key=lambda r: int(r[0])) if k == key]


@pytest.fixture(scope="module")
def all_methods(tmp_path_factory, synthetic_cache):
    out = tmp_path_factory.mktemp("compare") / "all"
    assert compare(out, "--methods", DEFAULT_METHODS, "--max-steps", str(STEPS)) == 0
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_method_learns(all_methods, method):
    run = all_methods / method
    loss = logged(run, "train/loss")
    assert len(loss) == STEPS
    assert sum(loss[-3:]) < sum(loss[:3]), f"{method}: the training loss did not fall ({loss[:3]} -> {loss[-3:]})"
    untrained, trained = jsonl(run / "metrics.jsonl")
    assert (untrained["step"], trained["step"]) == (0, STEPS)
    before, after = untrained["metrics"], trained["metrics"]
    assert after["depth"]["rmse"] < 0.9 * before["depth"]["rmse"], method
    assert after["semseg"]["pixel_acc"] > before["semseg"]["pixel_acc"] + 0.1, method


def test_the_table_equals_the_run_folders(all_methods):
    from degmix_tuning.models import ModelConfig
    from degmix_tuning.reporting.budget import measure_method

    table = json.loads((all_methods / "comparison.json").read_text())
    assert [r["method"] for r in table["rows"]] == METHODS
    assert table["metrics"] == {"semseg": "miou", "depth": "rmse"}
    with open(all_methods / "comparison.csv") as f:
        csv_rows = {r["method"]: r for r in csv.DictReader(f)}
    markdown = (all_methods / "comparison.md").read_text()
    for row in table["rows"]:
        run = all_methods / row["method"]
        summary = json.loads((run / "summary.json").read_text())
        last = jsonl(run / "metrics.jsonl")[-1]
        config = json.loads((run / "config.json").read_text())
        assert config["tuning"] == row["method"] and summary["step"] == row["step"] == STEPS
        assert row["trainable_mtlora_rule"] == summary["params"]["trainable"]
        model_cfg = ModelConfig.from_dict(config["model"])
        assert row["trainable_ditask_rule"] == measure_method(model_cfg, row["method"]).ditask_rule
        assert row["adapter_bytes"] == summary["adapter_bytes"] == (run / "adapter.safetensors").stat().st_size
        assert row["step_time_median_s"] == summary["step_time_median_s"]
        assert row["step_memory_mb"] == summary["step_memory_mb"]
        last = {"semseg": last["metrics"]["semseg"]["miou"], "depth": last["metrics"]["depth"]["rmse"]}
        assert row["metrics"] == last
        c = csv_rows[row["method"]]  # every digit survives the CSV
        assert int(c["trainable_mtlora_rule"]) == row["trainable_mtlora_rule"]
        assert int(c["trainable_ditask_rule"]) == row["trainable_ditask_rule"]
        assert float(c["semseg_miou"]) == last["semseg"] and float(c["depth_rmse"]) == last["depth"]
        assert float(c["adapter_mb"]) == summary["adapter_bytes"] / 1e6
        assert float(c["delta_m"]) == row["delta_m"]
        cells = [row["method"], f"{summary['params']['trainable']:,}", f"{row['trainable_ditask_rule']:,}",
                 f"{summary['adapter_bytes'] / 1e6:.2f}", f"{summary['step_time_median_s']:.3f}"]
        cells += ["—" if summary["step_memory_mb"] is None else f"{summary['step_memory_mb']:.1f}"]
        cells += [f"{last['semseg']:.4f}", f"{last['depth']:.4f}"]
        assert "| " + " | ".join(cells) + " | " in markdown, row["method"]


def test_delta_m_is_zero_for_full_and_the_formula_for_the_others(all_methods):
    table = json.loads((all_methods / "comparison.json").read_text())
    rows = {r["method"]: r for r in table["rows"]}
    assert table["reference"] == "full" and rows["full"]["delta_m"] == 0.0
    ref = jsonl(all_methods / "full" / "metrics.jsonl")[-1]["metrics"]
    for method in METHODS:
        m = jsonl(all_methods / method / "metrics.jsonl")[-1]["metrics"]
        semseg = (m["semseg"]["miou"] - ref["semseg"]["miou"]) / ref["semseg"]["miou"]  # higher is better
        depth = -(m["depth"]["rmse"] - ref["depth"]["rmse"]) / ref["depth"]["rmse"]  # lower is better
        assert rows[method]["delta_m"] == pytest.approx(100 * (semseg + depth) / 2, rel=1e-12, abs=1e-12)
    assert "| full | " in (all_methods / "comparison.md").read_text().split("| +0.00 |")[-2].splitlines()[-1]


def test_every_run_records_its_step_time_and_memory(all_methods):
    from degmix_tuning.training.step_stats import StepMemory

    measurable = StepMemory("cpu").available
    for method in METHODS:
        summary = json.loads((all_methods / method / "summary.json").read_text())
        # 2 warm-up steps, then time and memory take turns: 9 steps each
        assert summary["step_time_steps"] == (STEPS - 2) // 2 and summary["step_time_median_s"] > 0
        if measurable:
            assert summary["step_memory_steps"] == (STEPS - 2) // 2 and summary["step_memory_mb"] > 0
            assert summary["step_memory_kind"].startswith("RSS peak (VmHWM) - RSS before the step")
        else:
            assert summary["step_memory_mb"] is None and summary["step_memory_kind"].startswith("not measured")


def test_figure_and_manifest(all_methods):
    assert (all_methods / "comparison.png").stat().st_size > 20_000
    manifest = json.loads((all_methods / "compare.json").read_text())
    assert manifest["methods"] == METHODS and manifest["reference"] == "full"
    assert manifest["shared"]["train.max_steps"] == STEPS and "tuning" not in manifest["shared"]
    assert manifest["command"].startswith("degmix-tuning compare --methods degmix,decoder_only")


def test_an_interrupted_comparison_resumes_to_the_same_table(tmp_path, synthetic_cache, monkeypatch):
    from degmix_tuning.training import engine

    real_train = engine.train
    calls = []

    def interrupted(cfg, resume_from=None, stop_after=None, show_progress=True):
        calls.append((cfg.tuning, resume_from))
        if cfg.tuning == "bitfit":  # Ctrl-C in the second method, after its step-3 checkpoint
            real_train(cfg, resume_from=resume_from, stop_after=3, show_progress=show_progress)
            raise KeyboardInterrupt
        return real_train(cfg, resume_from=resume_from, show_progress=show_progress)

    args = ["--methods", "degmix,bitfit,full", "--max-steps", "6", "--set", "train.checkpoint_every=3"]
    monkeypatch.setattr(engine, "train", interrupted)
    assert compare(tmp_path / "cut", *args) == 130  # the documented exit code of an interruption
    assert calls == [("degmix", None), ("bitfit", None)]
    assert [p.name for p in (tmp_path / "cut" / "bitfit" / "checkpoints").iterdir()] == ["step_3"]
    finished = (tmp_path / "cut" / "degmix" / "summary.json").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(engine, "train", lambda cfg, **kw: calls.append((cfg.tuning, kw["resume_from"]))
                        or real_train(cfg, **kw))
    assert compare(tmp_path / "cut", *args) == 0
    assert calls == [("bitfit", "latest"), ("full", None)]  # degmix skipped, bitfit continued, full started
    assert (tmp_path / "cut" / "degmix" / "summary.json").stat().st_mtime_ns == finished

    assert compare(tmp_path / "whole", *args) == 0
    cut, whole = (json.loads((tmp_path / d / "comparison.json").read_text())["rows"] for d in ("cut", "whole"))
    for a, b in zip(cut, whole):
        assert a["method"] == b["method"] and a["step"] == b["step"] == 6
        assert a["metrics"] == b["metrics"] and a["delta_m"] == b["delta_m"], a["method"]
        assert a["trainable_mtlora_rule"] == b["trainable_mtlora_rule"]
    assert [r["step"] for r in jsonl(tmp_path / "cut" / "bitfit" / "metrics.jsonl")] == [0, 6]


def test_a_folder_made_with_another_shared_config_is_refused(tmp_path, synthetic_cache, capsys):
    from degmix_tuning.cli import build_parser
    from degmix_tuning.commands.compare import check_manifest, shared_config
    from degmix_tuning.training.recipe import config_from_args

    made_with = build_parser().parse_args(["compare", *TINY, "--max-steps", "2", "--lr", "0.5"])
    check_manifest(tmp_path / "c", shared_config(config_from_args(made_with, "nyud")), ["degmix"], "degmix", "")
    assert compare(tmp_path / "c", "--methods", "degmix", "--reference", "degmix", "--max-steps", "2") == 1
    err = capsys.readouterr().err
    assert "another shared config" in err and "train.lr 0.5 -> 0.02" in err and "--out" in err
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["compare.json"]  # nothing trained


def test_an_unknown_method_names_the_close_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--methods", "degmix,lorra", "--synthetic"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown tuning method 'lorra'. Did you mean 'lora'" in err
    assert not (tmp_path / "runs").exists()


def test_single_task_reference_trains_one_full_run_per_task(tmp_path, synthetic_cache):
    out = tmp_path / "st"
    assert compare(out, "--methods", "degmix", "--reference", "single-task", "--max-steps", "4") == 0
    table = json.loads((out / "comparison.json").read_text())
    ref = {}
    for task in ("semseg", "depth"):
        cfg = json.loads((out / "single_task" / task / "config.json").read_text())
        assert cfg["tuning"] == "full" and cfg["model"]["tasks"] == [task]
        key = "miou" if task == "semseg" else "rmse"
        ref[task] = jsonl(out / "single_task" / task / "metrics.jsonl")[-1]["metrics"][task][key]
    m = table["rows"][0]["metrics"]
    formula = 100 * ((m["semseg"] - ref["semseg"]) / ref["semseg"] - (m["depth"] - ref["depth"]) / ref["depth"]) / 2
    assert table["rows"][0]["delta_m"] == pytest.approx(formula, rel=1e-12)
    assert table["reference_metrics"] == ref
    total = table["single_task_total"]
    assert total["delta_m"] == 0.0
    assert total["trainable_mtlora_rule"] == sum(r["trainable_mtlora_rule"] for r in table["single_task"])


def test_published_points_are_recomputed_against_the_published_full_fine_tuning():
    from degmix_tuning.reporting.comparison import _published_points
    from degmix_tuning.reporting.published import PUBLISHED, delta_m

    points, why = _published_points("swin_t", "pascal", "full", "delta_m")
    assert not why
    by_name = {row.method: y for row, _, y, _ in points}
    full = next(r for r in PUBLISHED if r.method == "MTL - full FT" and r.dataset == "pascal")
    ditask = next(r for r in PUBLISHED if r.method == "DiTASK" and r.dataset == "pascal" and r.backbone == "swin_t")
    assert by_name["MTL - full FT"] == 0.0
    assert by_name["DiTASK"] == pytest.approx(delta_m(ditask.metrics, full.metrics))
    points, _ = _published_points("swin_t", "pascal", "single-task", "delta_m")
    assert {row.method: y for row, _, y, _ in points}["DiTASK"] == ditask.delta_m  # the paper's own Δm
    points, why = _published_points("tiny_swin", "nyud", "full", "delta_m")
    assert points == [] and "no published numbers for tiny_swin on nyud" in why


@pytest.mark.slow
def test_a_launched_run_equals_the_in_process_run(tmp_path, synthetic_cache, monkeypatch):
    """`--launch-args` runs the method as `accelerate launch recipes/tune_nyud.py --config <run>/config.json ...`."""
    from degmix_tuning.commands.compare import PlannedRun, launch_command
    from degmix_tuning.training.config import ExperimentConfig

    cfg = ExperimentConfig().override([f"train.output_dir={tmp_path / 'x'}"])
    cmd = launch_command(PlannedRun("lora", cfg, tmp_path / "x"), True, ["--num_processes", "2"], ["--import", "m.py"])
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--num_processes", "2"]
    assert cmd[5].endswith("recipes/tune_nyud.py")
    assert cmd[6:] == ["--config", str(tmp_path / "x" / "config.json"), "--output-dir", str(tmp_path / "x"),
                       "--import", "m.py", "--resume", "latest"]

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same thread count as this process: identical arithmetic
    args = ["--methods", "degmix", "--reference", "degmix", "--max-steps", "3"]
    launcher = "--num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"
    assert compare(tmp_path / "launched", *args, "--launch-args", launcher) == 0
    assert compare(tmp_path / "here", *args) == 0
    log = (tmp_path / "launched" / "degmix" / "launch.log").read_text()
    assert "accelerate.commands.launch --num_processes 1" in log and "run folder:" in log
    launched, here = (json.loads((tmp_path / d / "comparison.json").read_text())["rows"][0]
                      for d in ("launched", "here"))
    assert launched["metrics"] == here["metrics"]
    from degmix_tuning.training.checkpoint import read_adapter

    (a, _), (b, _) = (read_adapter(tmp_path / d / "degmix") for d in ("launched", "here"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # the same trained weights, bit for bit
