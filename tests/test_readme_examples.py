"""README examples run as written (issue 21): each test takes its command, code or numbers from README.md itself, so
the README and the code cannot drift apart silently. Runs are the README's commands on small synthetic data."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from degmix_tuning import cli
from degmix_tuning.backbones import BACKBONES
from degmix_tuning.training.recipe import main as recipe_main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# the README's quick-check data (24 scenes at 48x64): small enough for the suite, same code path as the demo
TINY = ["--set", "data.synthetic_n=24", "--set", "data.synthetic_size=48,64", "--set", "data.num_workers=0"]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def bash_lines() -> list[str]:
    """Every command line of the README's bash blocks (continuations joined)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def command(prefix: str, containing: str = "") -> list[str]:
    """The README's command (a bash block line, else an inline `code` span) that starts with `prefix` and contains
    `containing`, split, comment dropped."""
    spans = [span.strip() for span in re.findall(r"`([^`\n]+)`", README)]
    found = [line for line in bash_lines() + spans if line.startswith(prefix) and containing in line]
    assert found, f"README has no command starting with {prefix!r} containing {containing!r}"
    return shlex.split(found[0], comments=True)


@pytest.fixture
def clean_plugins(monkeypatch):
    """README plugin examples register `two_level_net` and import `my_backbones`: undone after each test, and the
    current folder is not on sys.path (as under `accelerate launch` or the `degmix-tuning` script)."""
    saved = dict(BACKBONES._items)  # noqa: SLF001
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    yield
    BACKBONES._items.clear()  # noqa: SLF001
    BACKBONES._items.update(saved)  # noqa: SLF001
    sys.modules.pop("my_backbones", None)


def forget_plugin(folder: Path) -> None:
    """As if in a new process: the module and its backbone unknown, its folder off sys.path."""
    sys.modules.pop("my_backbones", None)
    BACKBONES._items.pop("two_level_net", None)  # noqa: SLF001
    while str(folder) in sys.path:
        sys.path.remove(str(folder))


# ------------------------------------------------------------------------------------ 1. the demo's numbers
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One folder holding runs/ of the README's quick check and compare example (cwd while they run)."""
    return tmp_path_factory.mktemp("readme_runs")


def _in(folder: Path, fn):
    old = os.getcwd()
    os.chdir(folder)
    try:
        return fn()
    finally:
        os.chdir(old)


def test_quick_check_prints_the_readme_numbers(workspace, synthetic_cache, capsys):
    """Item 1: the README's short deterministic run (the demo at 20 steps on 24 small scenes) prints the line the
    README quotes, digit for digit."""
    cmd = command("accelerate launch recipes/tune_nyud.py", "--max-steps 20")
    assert cmd[:3] == ["accelerate", "launch", "recipes/tune_nyud.py"]
    assert _in(workspace, lambda: recipe_main("nyud", cmd[3:] + ["--no-progress"])) == 0
    out = capsys.readouterr().out
    printed = next(line for line in out.splitlines() if "untrained -> trained:" in line)
    quoted = printed.split("untrained -> trained: ", 1)[1]
    readme_line = re.search(r"prints `(semseg miou [^`]*)`", README).group(1)
    numbers = lambda text: [float(x) for x in re.findall(r"\d+\.\d{4}", text)]  # noqa: E731
    # digit for digit on the machine that measured it (AVX-512 and AVX2 kernels); CPUs without SIMD kernels move the
    # last digit (depth 0.9401, said in the README), far below what a changed recipe moves (lr 0.011 instead of
    # 0.01: depth 1.0285)
    assert len(numbers(quoted)) == len(numbers(readme_line)) == 4, (quoted, readme_line)
    assert np.allclose(numbers(quoted), numbers(readme_line), rtol=0, atol=2e-3), (quoted, readme_line)
    # and it is the README's full demo setup, shortened: same recipe defaults (lr, batch, interaction)
    config = json.loads((workspace / "runs" / "quick_nyud" / "config.json").read_text())
    assert (config["train"]["lr"], config["train"]["batch_size"], config["model"]["backbone"]) == (
        0.01, 4, "swin_synthetic")


# ------------------------------------------------------------------------------------ 3. report plot after compare
def test_report_plot_after_the_demo_and_compare_plots_the_comparison(workspace, synthetic_cache, capsys):
    """Item 3: after the quick check and the README's compare example (shortened), `report plot --out fig.png
    --runs runs/` succeeds and plots the compared method at the Δm `compare` computed."""
    cmd = command("OMP_NUM_THREADS=1 degmix-tuning compare")
    args = cmd[2:]
    args[args.index("--methods") + 1] = "degmix"  # the README's seven methods, cut to one for the suite
    args[args.index("--max-steps") + 1] = "2"
    args[args.index("--checkpoint-every") + 1] = "0"
    if not (workspace / "runs" / "quick_nyud").is_dir():  # the demo's run folder, as after the quick start
        assert _in(workspace, lambda: recipe_main("nyud", [
            "--synthetic", "--max-steps", "1", "--output-dir", "runs/quick_nyud", "--no-progress", *TINY])) == 0
    assert _in(workspace, lambda: cli.main(args + TINY + ["--no-progress"])) == 0
    capsys.readouterr()
    plot = command("degmix-tuning report plot")
    assert _in(workspace, lambda: cli.main(plot[1:])) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "0 published points, 1 runs" in out
    assert "quick_nyud" in out  # listed as skipped: no reference for it
    assert (workspace / "fig.png").stat().st_size > 10_000

    from degmix_tuning.reporting.plot import plot_budget

    result = _in(workspace, lambda: plot_budget("fig2.png", "runs/"))
    comparison = json.loads((workspace / "runs" / "compare_synthetic_nyud" / "comparison.json").read_text())
    expected = next(r["delta_m"] for r in comparison["rows"] if r["method"] == "degmix")
    assert [round(y, 9) for _, _, y, _ in result.points] == [round(expected, 9)]
    assert result.points[0][3] == "vs single-task of compare_synthetic_nyud"


# ------------------------------------------------------------------------------------ 2. plug in a backbone
def test_plug_in_a_backbone_walkthrough_runs_as_written(tmp_path, synthetic_cache, monkeypatch, clean_plugins,
                                                        capsys):
    """Item 2: the README's file, its training command (shortened), the run folder it names, and `evaluate` both
    without --import (recorded) and with a bare module name found in the current folder."""
    snippet = next(b for b in python_blocks() if "class TwoLevelNet" in b)
    (tmp_path / "my_backbones.py").write_text(snippet)
    monkeypatch.chdir(tmp_path)
    train = command("accelerate launch recipes/tune_nyud.py", "--import my_backbones.py")
    folder = re.search(r"-> (runs/\S+)", next(line for line in bash_lines() if "--import my_backbones.py" in line))
    assert folder, "the README's training command names no run folder"
    code = recipe_main("nyud", train[3:] + ["--max-steps", "2", "--head-dim", "16", "--no-progress", *TINY,
                                            "--set", "train.eval_at_start=false", "--set", "train.checkpoint_every=0"])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / folder.group(1)
    assert (run / "adapter.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["model"]["imports"] == [str(tmp_path / "my_backbones.py")]

    for line in [line for line in bash_lines() if line.startswith("degmix-tuning") and folder.group(1) in line]:
        forget_plugin(tmp_path)
        args = shlex.split(line, comments=True)[1:]
        assert cli.main(args + ["--eval-workers", "1"]) == 0, capsys.readouterr().err
        assert "semseg" in capsys.readouterr().out
    assert "--import my_backbones evaluate" in " ".join(bash_lines())  # the bare-name form was among them


# ------------------------------------------------------------------------------------ 4. the MTLoRA counts
def test_mtlora_snippet_prints_the_counts_its_comments_state(capsys):
    """Item 4: the README's build_tuned_model(..., "mtlora", rank=32) snippet prints the two counts its comments give
    (the model's own 5,939,571 and MTLoRA's published 6,083,642), and the text names the same numbers."""
    snippet = next(b for b in python_blocks() if '"mtlora", rank=32' in b)
    exec(compile(snippet, "README mtlora snippet", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.split()
    stated = re.findall(r"print\(.*\)\s+# ([\d,]+) =", snippet)
    assert printed == stated == ["5,939,571", "6,083,642"]
    assert "6.08M for r=32" in README and "8,344,634" in README


# ------------------------------------------------------------------------------------ 5. custom backbone snippet
def test_custom_backbone_snippet_runs_as_a_script(tmp_path, clean_plugins, capsys):
    """Item 5: the README's backbone file has every import it needs: run as a script it builds the model and prints
    the output shapes its comment states."""
    snippet = next(b for b in python_blocks() if "class TwoLevelNet" in b)
    path = tmp_path / "my_backbones.py"
    path.write_text(snippet)
    runpy.run_path(str(path), run_name="__main__")
    printed = capsys.readouterr().out.strip()
    assert f"# {printed}" in snippet
    assert printed == "{'semseg': (1, 40, 96, 128), 'depth': (1, 1, 96, 128)}"


def test_an_unknown_backbone_error_says_to_pass_import(tmp_path, synthetic_cache, monkeypatch, clean_plugins,
                                                       capsys):
    """Item 5: forgetting --import is one line that lists the names and names the fix."""
    monkeypatch.chdir(tmp_path)
    code = recipe_main("nyud", ["--synthetic", "--backbone", "two_level_net", "--no-progress", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "unknown backbone 'two_level_net'" in err[0] and "--import" in err[0]


# ------------------------------------------------------------------------------------ 6. CPU-only install
def test_cpu_only_install_route_matches_the_pins():
    """Item 6: the README's CPU-only route installs the pinned torch/torchvision from PyTorch's CPU index, the
    `+cpu` wheels satisfy both the package's ranges and constraints.txt, and it is followed by the README's first
    command unchanged; `.ci/run` stays the README's test command."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    cpu = command("pip install torch==", "--index-url")
    assert cpu[cpu.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    wanted = dict(arg.split("==") for arg in cpu if "==" in arg)
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert wanted == {"torch": pins["torch"], "torchvision": pins["torchvision"]}
    ranges = {Requirement(r).name: Requirement(r).specifier
              for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name, version in wanted.items():
        local = Version(f"{version}+cpu")
        assert local in ranges[name] and Requirement(f"{name}=={pins[name]}").specifier.contains(local)
    lines = bash_lines()
    first = next(i for i, line in enumerate(lines) if line.startswith("pip install torch=="))
    assert lines[first + 1] == next(line for line in lines if line.startswith("pip install -c"))
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1].replace("pip install -q", "pip install")
    assert ci in lines


# ------------------------------------------------------------------------------------ 7. housekeeping
def test_report_and_benchmark_outputs_are_gitignored():
    """Item 7: the README's `report params --out reports/` and benchmarks/param_budget.py's output stay untracked."""
    if subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "reports/params.md", "benchmarks/results/param_budget/x.csv"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.split() == ["reports/params.md", "benchmarks/results/param_budget/x.csv"]
    assert "--out reports/" in README


def test_to_arrow_labels_each_split_and_shows_no_datasets_bars(tmp_path, capfd):
    """Item 7: converting shows progress per split under its own name; datasets' bars (which said "train" for val)
    are off, the saved val split knows it is val, and the bars' global switch is back as it was."""
    import datasets
    from datasets import utils as ds_utils

    from degmix_tuning.data.synthetic.writer import write_synthetic_dataset

    bars_before = ds_utils.are_progress_bars_disabled()

    root = write_synthetic_dataset(tmp_path / "root", n=4, flavour="nyud", seed=0, size=(24, 32))
    capfd.readouterr()
    assert cli.main(["data", "to-arrow", "--dataset", "nyud", "--root", str(root), "--out", str(tmp_path / "a")]) == 0
    err = capfd.readouterr().err
    assert "Generating" not in err and "Saving" not in err and "%|" not in err
    progress = [line for line in err.splitlines() if re.match(r"(train|val): \d+/\d+$", line)]
    assert progress == ["train: 3/3", "val: 1/1"]
    assert str(datasets.load_from_disk(str(tmp_path / "a" / "splits" / "val")).split) == "val"
    assert ds_utils.are_progress_bars_disabled() == bars_before


# ------------------------------------------------------------------------------------ 8. prediction pictures
def test_palette_only_ignore_is_dark_and_classes_are_far_apart():
    """Item 8: "no label" (255) is the only black-ish colour; NYUD's 40 classes (wall, floor, bookshelf, ...) and
    PASCAL's 21 are pairwise at least 25 CIELAB units apart (wall was black, floor/bookshelf near-identical reds)."""
    from degmix_tuning.visualize import palette, srgb_to_lab

    pal = palette()
    lab = srgb_to_lab(pal)
    assert tuple(pal[255]) == (0, 0, 0) and lab[255, 0] < 1
    assert lab[:255, 0].min() >= 35  # every class at least L* 35
    for n in (7, 21, 40):
        d = np.linalg.norm(lab[:n, None] - lab[None, :n], axis=-1)
        np.fill_diagonal(d, np.inf)
        assert d.min() >= 25, (n, d.min())
    assert np.linalg.norm(lab[1] - lab[9]) >= 25  # NYUD floor vs bookshelf
    assert np.allclose(srgb_to_lab(np.array([255, 255, 255], np.uint8)), [100, 0, 0], atol=0.05)
    assert np.allclose(srgb_to_lab(np.array([255, 0, 0], np.uint8)), [53.24, 80.09, 67.20], atol=0.05)  # CIE red


def test_prediction_legend_text_is_readable_at_the_image_size(tmp_path, monkeypatch):
    """Item 8: for a 425x560 NYUD image the panel is drawn at least at the image's pixel size and the legend text is
    at least 16 px high (it was 8 px: 6 pt at 100 dpi)."""
    import matplotlib.pyplot as plt

    from degmix_tuning.data.info import NYUD_CLASSES
    from degmix_tuning.visualize import prediction_figure

    figures, real_close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    rng = np.random.default_rng(0)
    seg = rng.integers(0, 40, (425, 560))
    prediction_figure(tmp_path / "f.png", np.zeros((425, 560, 3), np.uint8), {"semseg": seg}, {"semseg": seg},
                      {"semseg": NYUD_CLASSES})
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    legend_axes = [ax for ax in fig.axes if ax.get_legend() is not None]
    heights = [t.get_window_extent(renderer).height for ax in legend_axes for t in ax.get_legend().get_texts()]
    panel_width = fig.axes[1].get_window_extent(renderer).width
    assert len(heights) == 13  # 12 classes + "+28 more"
    assert min(heights) >= 16 and panel_width >= 560
    assert min(heights) / panel_width >= 0.028  # relative to the image, whatever its size
    real_close(fig)
