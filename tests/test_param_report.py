"""Parameter-budget report: a/b/c split, adapter file size, published rows and flags, delta-m, CLI, benchmark, plot."""

from __future__ import annotations

import csv
import importlib.util
import json
import struct
from pathlib import Path

import pytest
from safetensors.torch import save
from torch import nn

from degmix_tuning.cli import main as cli_main
from degmix_tuning.models import create_model, get_preset
from degmix_tuning.reporting import (
    PUBLISHED, MethodBudget, compare_published, delta_m, flag, measure_method, recomputed_delta_m, reference_row,
    split_trainable,
)
from degmix_tuning.reporting.plot import plot_budget
from degmix_tuning.reporting.published import PASCAL4
from degmix_tuning.reporting.reproduce import Reproducer, Reproduction
from degmix_tuning.reporting.runs import load_run
from degmix_tuning.tuning import apply_tuning, resolve_tuning_config, trainable_bytes, trainable_state

ROOT = Path(__file__).resolve().parents[1]
SUM_C = 16 + 32 + 64 + 128  # tiny_swin stage widths
TINY_EXTRAS = 45_876  # patch embed + norms + bias tables + PatchMerging of tiny_swin (see test_tuning.py)
TINY_LIGHT_HEAD = 682_961  # light head for semseg (40) + depth (1) on 16/32/64/128


def _row(method: str, dataset: str = "pascal", backbone: str = "swin_t"):
    return next(r for r in PUBLISHED if r.method == method and r.dataset == dataset and r.backbone == backbone)


def test_measure_splits_adapter_unfrozen_base_and_head():
    b = measure_method(get_preset("degmix_tuning_tiny_nyud"), "mtlora")
    assert (b.adapter, b.unfrozen_base, b.head) == (16 * 16 * SUM_C + 12 * 4 * 2 * SUM_C, TINY_EXTRAS, TINY_LIGHT_HEAD)
    assert b.mtlora_rule == 84_480 + 45_876 + 682_961 and b.ditask_rule == 84_480 + 45_876
    assert b.tasks == ("semseg", "depth") and b.tuning["rank"] == 16
    # fp32 safetensors: 8-byte length, JSON header (names + the run config), 4 bytes per scalar
    assert 0 < b.adapter_bytes - 4 * b.mtlora_rule < 200 * 150 + 8_000


def test_adapter_bytes_are_the_size_of_the_file_a_run_writes(tmp_path):
    from degmix_tuning.training.checkpoint import save_adapter
    from degmix_tuning.training.config import ExperimentConfig

    cfg = ExperimentConfig(model=get_preset("degmix_tuning_tiny_nyud"), tuning="bitfit")
    model = create_model(cfg.model, freeze_backbone=True)
    apply_tuning(model, "bitfit")
    written = save_adapter(model, tmp_path / "adapter.safetensors", cfg.to_dict()).stat().st_size
    assert measure_method(cfg.model, "bitfit").adapter_bytes == written
    state = trainable_state(model)
    blob = save({k: v.float() for k, v in state.items()})
    header = struct.unpack("<Q", blob[:8])[0]
    scalars = sum(v.numel() for v in state.values())
    assert trainable_bytes(model) == len(blob) == 8 + header + 4 * scalars  # tensors only
    assert written - len(blob) > len(json.dumps(cfg.to_dict()))  # the file also holds the config
    assert set(json.loads(blob[8:8 + header])) - {"__metadata__"} == set(state)


def test_split_refuses_trainable_parameters_outside_backbone_and_head():
    model = create_model("degmix_tuning_tiny_nyud")
    base = {id(p) for p in model.backbone.parameters()}
    apply_tuning(model, "degmix")
    assert split_trainable(model, base) == (0, 0, sum(p.numel() for p in model.head.parameters()))
    model.extra = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="outside backbone and head"):
        split_trainable(model, base)


def test_delta_m_signs_and_the_published_table():
    assert delta_m({"semseg": 50.0, "depth": 0.5}, {"semseg": 40.0, "depth": 0.4}) == pytest.approx(0.0)
    assert delta_m({"semseg": 44.0, "normals": 18.0}, {"semseg": 40.0, "normals": 20.0}) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="missing"):
        delta_m({"semseg": 1.0}, {"semseg": 1.0, "depth": 1.0})
    assert reference_row("swin_t", "pascal").method.startswith("Single-task")
    for row in PUBLISHED:  # every printed delta-m matches its metrics within 0.02, except the known MTL-full-FT typo
        d = recomputed_delta_m(row)
        if d is not None and row.delta_m is not None and row.method != "MTL - full FT":
            assert abs(d - row.delta_m) <= 0.021, row.method
    full_ft = _row("MTL - full FT")
    assert round(recomputed_delta_m(full_ft), 2) == 2.45 and full_ft.delta_m == 2.23
    assert all(r.provenance in {"P", "S", "C", "R"} and r.rule for r in PUBLISHED)


def test_flags():
    r16 = _row("MTLoRA (r=16)")
    assert flag(r16, Reproduction(4_953_146, "")) == "reproduced"
    assert flag(r16, Reproduction(4_960_000, "")).startswith("differs: ours 4.960M vs printed 4.95M")
    assert flag(_row("VPT-deep"), None).startswith("not reproducible")
    assert flag(r16, None, "run the report with --backbone swin_t").startswith("not computed")


def _seed(method: str, dataset: str, tasks, a: int, b: int, **kw) -> MethodBudget:
    return MethodBudget(method, "swin_t", dataset, tuple(tasks), a, b, 0, 0, 0,
                        resolve_tuning_config(method, **kw).to_dict())


def test_published_mtlora_and_ditask_counts_reproduce(monkeypatch):
    """Swin-T: shared 16 r 4416 + task 12*4*4*1440 adapters, 1,599,546 extras, MTLoRA decoders 1,946,624."""
    import degmix_tuning.reporting.reproduce as reproduce

    def no_builds(*a, **k):
        raise AssertionError("every count here comes from the seeds")

    monkeypatch.setattr(reproduce, "measure_method", no_builds)
    monkeypatch.setattr(Reproducer, "channels", lambda self: [96, 192, 384, 768])
    extras = 1_599_546
    seeds = [_seed("mtlora", "pascal", PASCAL4, 16 * r * 4416 + 12 * 4 * 4 * 1440, extras, rank=r)
             for r in (16, 32, 64)]
    seeds.append(_seed("ditask", "pascal", PASCAL4, 63 * 48 + 3 * 3 * 4 * 4, extras))
    seeds.append(_seed("ditask", "nyud", ("semseg", "depth"), 63 * 48 + 3 * 3 * 4 * 2, extras))
    rep = Reproducer("swin_t", seeds)
    assert rep.mtlora_decoders("pascal", PASCAL4) == 1_946_624
    assert rep.mtlora_decoders("nyud", ("semseg", "depth")) == 1_000_337
    rows = tuple(r for r in PUBLISHED if r.recipe and (r.recipe.startswith(("mtlora", "ditask"))
                                                      or r.recipe == "decoders_only"))
    got = {(c.row.method, c.row.dataset): c for c in compare_published("swin_t", seeds, rows)}
    assert got[("MTLoRA (r=16)", "pascal")].reproduced == 4_953_146
    assert got[("MTLoRA (r=32)", "pascal")].reproduced == 6_083_642
    assert got[("MTLoRA (r=64)", "pascal")].reproduced == 8_344_634
    assert got[("MTLoRA (r=64), as printed by DiTASK", "pascal")].reproduced == 6_398_010
    assert got[("DiTASK, MTLoRA's counting rule", "pascal")].reproduced == 3_549_338
    for key in [("MTLoRA (r=16)", "pascal"), ("MTLoRA (r=32)", "pascal"), ("MTLoRA (r=64)", "pascal"),
                ("MTLoRA (r=64), as printed by DiTASK", "pascal"), ("DiTASK, MTLoRA's counting rule", "pascal")]:
        assert got[key].flag == "reproduced", key
    assert got[("DiTASK", "pascal")].reproduced == 1_602_714
    assert got[("DiTASK", "pascal")].flag.startswith("differs: ours 1.603M vs printed 1.61M")
    assert got[("DiTASK", "nyud")].reproduced == 1_602_642
    assert got[("MTL - decoders only", "pascal")].flag.startswith("differs: ours 1.947M")


def test_report_params_cli_writes_md_csv_json(tmp_path, capsys):
    out = tmp_path / "rep"
    code = cli_main(["report", "params", "--backbone", "tiny_swin", "--dataset", "nyud", "--methods",
                     "degmix,mtlora,lora", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "params.json").read_text())
    measured = {m["method"]: m for m in data["measured"]}
    assert set(measured) == {"degmix", "mtlora", "lora"}
    assert measured["mtlora"]["adapter"] == 84_480 and measured["mtlora"]["unfrozen_base"] == TINY_EXTRAS
    assert measured["lora"]["adapter"] == 8 * 16 * SUM_C and measured["lora"]["head"] == measured["degmix"]["head"]
    assert measured["degmix"]["mtlora_rule"] == measured["degmix"]["head"] and measured["degmix"]["ditask_rule"] == 0
    # published rows are listed; their recipes need the real backbone, so nothing is built for tiny_swin
    pub = {(p["method"], p["dataset"]): p for p in data["published"]}
    assert pub[("MTLoRA (r=16)", "pascal")]["flag"] == "not computed: run the report with --backbone swin_t"
    assert pub[("VPT-deep", "pascal")]["flag"].startswith("not reproducible")
    rows = list(csv.DictReader((out / "params.csv").open()))
    assert [r["method"] for r in rows if r["section"] == "measured"] == ["degmix", "mtlora", "lora"]
    mtlora_row = next(r for r in rows if r["method"] == "mtlora")
    assert int(mtlora_row["mtlora_rule"]) == 84_480 + TINY_EXTRAS + TINY_LIGHT_HEAD
    md = (out / "params.md").read_text()
    assert "| mtlora | 84,480 | 45,876 | 682,961 |" in md and "Published numbers" in md
    assert "Trainable parameters" in capsys.readouterr().out
    assert cli_main(["report", "params", "--backbone", "tiny_swin", "--methods", "loraa", "--no-published"]) == 1
    assert "did you mean 'lora'" in capsys.readouterr().err.lower()


def test_benchmark_script_matches_the_command(tmp_path):
    spec = importlib.util.spec_from_file_location("param_budget", ROOT / "benchmarks" / "param_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--backbone", "tiny_swin", "--dataset", "nyud", "--methods", "bitfit",
                        "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "params.json").read_text())
    assert data["measured"][0]["unfrozen_base"] == 3_360  # tiny_swin's bias terms (test_tuning.py)


def _write_run(folder: Path, model: dict, metrics_lines: list[dict], trainable: int | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": model, "tuning": "degmix", "tuning_kwargs": {}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_lines))
    if trainable is not None:
        (folder / "summary.json").write_text(json.dumps({"params": {"trainable": trainable}}))
    return folder


def test_plot_reads_runs_and_writes_a_png(tmp_path):
    ref = reference_row("swin_t", "pascal").metrics  # a run exactly at the single-task numbers has delta-m 0
    at_ref = {"semseg": {"miou": ref["semseg"] / 100}, "human_parts": {"miou": ref["human_parts"] / 100},
              "sal": {"maxf": 0.8, "per_image_miou": ref["sal"] / 100}, "normals": {"mean_angle": ref["normals"]}}
    pascal = {"backbone": "swin_t", "dataset": "pascal", "tasks": list(PASCAL4)}
    runs = tmp_path / "runs"
    good = _write_run(runs / "a", pascal, [{"step": 10, "metrics": at_ref}, {"step": 0, "metrics": {}}], 2_203_397)
    _write_run(runs / "b", {"backbone": "tiny_swin", "dataset": "nyud", "tasks": ["semseg", "depth"]},
               [{"step": 1, "metrics": {"semseg": {"miou": 0.1}}}], 1000)
    _write_run(runs / "c", pascal, [{"step": 5, "metrics": {"semseg": {"miou": 0.5}}}], 5000)
    rec = load_run(good)
    assert rec.step == 10 and rec.trainable == 2_203_397
    assert delta_m({t: rec.paper_metrics()[t] for t in ref}, ref) == pytest.approx(0.0, abs=1e-9)

    result = plot_budget(tmp_path / "fig.png", runs)
    # a: full delta-m; c: delta-m over its own task (semseg), labelled as such; b: another backbone and dataset
    assert result.runs == 2 and result.published >= 20
    assert len(result.skipped) == 1 and "tiny_swin/nyud" in result.skipped[0]
    png = (tmp_path / "fig.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    by_metric = plot_budget(tmp_path / "semseg.png", runs, metric="semseg")
    assert by_metric.runs == 2  # run c has semseg too

    empty = tmp_path / "empty"
    empty.mkdir()
    assert plot_budget(tmp_path / "none.png", empty).runs == 0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_budget(tmp_path / "x.png", tmp_path / "missing")
    (good / "metrics.jsonl").write_text('{"step": 1, "metrics": {}}\n{broken\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        plot_budget(tmp_path / "x.png", runs)


def test_nyud_plot_of_a_semseg_depth_run_needs_no_flags(tmp_path):
    """`report plot --runs` on a demo-like NYUD run: dataset and backbone come from the run, and Δm over its own
    tasks puts it (and DeGMix-Tuning's published point) on the figure; log ticks read as plain numbers."""
    from degmix_tuning.reporting import plot as plot_module

    runs = tmp_path / "runs"
    _write_run(runs / "demo", {"backbone": "swin_t", "dataset": "nyud", "tasks": ["semseg", "depth"]},
               [{"step": 80, "metrics": {"semseg": {"miou": 0.4265}, "depth": {"rmse": 0.60}}}], 1_322_645)
    result = plot_budget(tmp_path / "nyud.png", runs)
    assert result.runs == 1 and not result.skipped
    rows = [r for r in plot_module.PUBLISHED if r.dataset == "nyud" and r.method == "DeGMix-Tuning"]
    y, note = plot_module._y_published(rows[0], "delta_m")
    ref = reference_row("swin_t", "nyud").metrics
    expected = 100 * ((44.90 - ref["semseg"]) / ref["semseg"] - (0.615 - ref["depth"]) / ref["depth"]) / 2
    assert note == "semseg+depth" and y == pytest.approx(expected)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(0.5, 100)
    plot_module._plain_log_ticks(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert "1" in labels and "10" in labels and not any("10^" in t or "times" in t for t in labels)
