"""Run folders survive what users do to them (issue 21): full and read-only disks, kills at any write, edited or
deleted config files, crafted checkpoint files, restarts, blown-up weights, SIGTERM/SIGINT, failed starts."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from degmix_tuning.training.checkpoint import load_tuned, read_adapter
from degmix_tuning.training.config import ExperimentConfig
from degmix_tuning.training.engine import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]
# the smallest run that trains: the tiny preset's backbone at d=16 on 8 synthetic 32x32 scenes, CSV logs only
TINY = [
    "model.backbone=tiny_swin", "model.head.dim=16", "model.tasks=semseg,depth", "data.synthetic=true",
    "data.synthetic_n=8", "data.synthetic_size=32,32", "data.num_workers=0", "train.batch_size=2",
    "train.eval_batch_size=8", "train.lr=0.05", "train.max_steps=2", "train.eval_every=0", "train.checkpoint_every=0",
    "train.eval_at_start=false", "train.log_every=1", "train.trackers=csv",
]


def tiny(out: Path, *sets: str) -> ExperimentConfig:
    return ExperimentConfig().override(TINY + [f"train.output_dir={out}", *sets])


def steps_in(path: Path) -> list[int]:
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


def csv_rows(path: Path) -> list[tuple[str, str]]:
    return [tuple(r.split(",")[:2]) for r in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_cache):
    """A finished 2-step run with a checkpoint at each step and an evaluation at the start and the end."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny(out, "train.checkpoint_every=1", "train.eval_at_start=true"), show_progress=False)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def config_of(run: Path, *sets: str) -> ExperimentConfig:
    """The run's config.json, pointed at `run` (a copy of the fixture's folder)."""
    return ExperimentConfig.load(run / "config.json").override([f"train.output_dir={run}", *sets])


def run_recipe(cfg: ExperimentConfig, tmp_path: Path, capsys, *flags: str) -> tuple[int, list[str]]:
    """The recipe entry point in this process: (exit code, stderr lines)."""
    from degmix_tuning.training.recipe import main

    path = cfg.save(tmp_path / "cfg.json")
    capsys.readouterr()
    code = main("nyud", ["--config", str(path), "--no-progress", *flags])
    return code, capsys.readouterr().err.strip().splitlines()


# --- 1. full and read-only disks: one line, exit 2, no temporary file left ---

def _torch_stream_failure(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 9536 vs 9424")


def _torch_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _safetensors_enospc(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                          'left on device" })')


def _read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize("failure, target, expected", [
    (_torch_stream_failure, "torch.save", "the file system failed on"),
    (_torch_enospc, "torch.save", "no space left on the device writing"),
    (_safetensors_enospc, "checkpoint.save_file", "no space left on the device writing"),
    (_read_only, "os.replace", "read-only file system writing"),
])
def test_a_full_or_read_only_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch,
                                                                           synthetic_cache, failure, target, expected):
    from degmix_tuning.training import checkpoint

    owner, name = {"torch.save": (torch, "save"), "checkpoint.save_file": (checkpoint, "save_file"),
                   "os.replace": (os, "replace")}[target]
    real = getattr(owner, name)
    calls = {"n": 0}

    def fail_after_start(*args, **kwargs):  # the start's own config/log writes succeed, the later ones fail
        calls["n"] += 1
        if target == "os.replace" and calls["n"] <= 1:
            return real(*args, **kwargs)
        failure()

    monkeypatch.setattr(owner, name, fail_after_start)
    out = tmp_path / "run"
    code, err = run_recipe(tiny(out), tmp_path, capsys)
    assert code == 2 and len(err) == 1, err
    assert expected in err[0] and str(out) in err[0], err[0]
    left = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert left == [], left  # checkpoints/step_2.tmp, adapter.safetensors.tmp, summary.json.tmp: all removed
    assert not (out / ".lock").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the injected EROFS case covers it)")
def test_a_read_only_output_folder_is_one_line(tmp_path, capsys, synthetic_cache):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, err = run_recipe(tiny(out), tmp_path, capsys)
    finally:
        out.chmod(0o755)
    assert code == 2 and len(err) == 1 and "permission denied" in err[0]


# --- 2. a kill at any write of a resume leaves every file whole ---

def _kill_at_write(run_dir: Path, n: int | None, log: list | None = None) -> None:
    """In a forked child: die like SIGKILL at the n-th write into the run folder, just after its file was opened (a
    truncating open has emptied it) or just before a rename; with n=None record every write in `log` instead."""
    import builtins
    import io

    count = {"n": 0}
    real_open, real_replace, real_rename = builtins.open, os.replace, os.rename

    def event(path, kind):
        count["n"] += 1
        if log is not None:
            log.append((count["n"], re.sub(r"\d+", "N", Path(path).name), kind))
        if count["n"] == n:
            os._exit(137)

    class Writer:
        def __init__(self, f, path):
            self._f, self._path = f, path

        def write(self, data):
            event(self._path, "write")
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def __iter__(self):
            return iter(self._f)

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, os.PathLike)) and str(run_dir) in os.path.abspath(os.fspath(file))
        return Writer(f, file) if inside and any(c in mode for c in "wax+") else f

    def renamer(real):
        def rename(src, dst, *args, **kwargs):
            if str(run_dir) in os.path.abspath(os.fspath(dst)):
                event(dst, "rename")
            return real(src, dst, *args, **kwargs)
        return rename

    builtins.open = io.open = open_
    os.replace, os.rename = renamer(real_replace), renamer(real_rename)


def _forked(fn) -> int:
    """Run fn() in a forked child (one intra-op thread, as DataLoader workers do) and return its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            torch.set_num_threads(1)
            sys.stdout = sys.stderr = open(os.devnull, "w")
            fn()
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def one_thread():
    """One intra-op thread here too: the forked children start warm (imports, first-op costs paid once here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_kill_at_any_write_of_a_resume_leaves_no_file_empty_and_loses_no_row(tmp_path, synthetic_cache, one_thread):
    base = tmp_path / "base"
    cfg = tiny(base, "train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=1", "train.eval_at_start=true")
    train(cfg, stop_after=3, show_progress=False)  # checkpoint at step 2; rows of step 3 too
    assert steps_in(base / "metrics.jsonl") == [0, 1, 2, 3]
    kept_csv = [r for r in csv_rows(base / "log.csv") if int(r[0]) <= 2]
    events = tmp_path / "events.json"

    def resume_in(run: Path, n: int | None) -> int:
        shutil.copytree(base, run)

        def resume():
            log = []
            _kill_at_write(run, n, log)
            try:
                train(cfg.override([f"train.output_dir={run}"]), resume_from="latest", show_progress=False)
            finally:
                events.write_text(json.dumps(log))
        return _forked(resume)

    def check(run: Path, n) -> list[int]:
        for name in ("config.json", "summary.json", "tracker_config.json"):
            if (run / name).exists():
                json.loads((run / name).read_text())  # never empty, never half written
        steps = steps_in(run / "metrics.jsonl")
        assert steps[:3] == [0, 1, 2], (n, steps)  # the rows up to the checkpoint are never lost
        rows = csv_rows(run / "log.csv")
        assert rows[: len(kept_csv)] == kept_csv and len(rows) == len(set(rows)), n
        assert json.loads((run / "history.jsonl").read_text().splitlines()[0])["event"] == "start", n
        return steps

    assert resume_in(tmp_path / "whole", None) == 0  # uninterrupted: every write recorded
    assert check(tmp_path / "whole", None) == [0, 1, 2, 3, 4]  # every step logged once
    first_of_each = {}  # a kill at the first write (or rename) of each file: 9 files, 24 writes in all
    for n, name, kind in json.loads(events.read_text()):
        first_of_each.setdefault(name.removesuffix(".tmp"), (n, kind))
    assert {"config.json", "metrics.jsonl", "log.csv", "history.jsonl", "summary.json", "step_N"} <= set(
        first_of_each), first_of_each
    for name, (n, kind) in sorted(first_of_each.items(), key=lambda item: item[1]):
        run = tmp_path / f"kill_{n}"
        assert resume_in(run, n) == 137, (name, kind)
        check(run, (n, name, kind))
        shutil.rmtree(run)


# --- 3. a resume is checked against the config the checkpoint was written with ---

def test_resume_checks_the_checkpoints_own_config_not_the_editable_config_json(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "run"
    cfg = tiny(out, "train.max_steps=4", "train.checkpoint_every=2")
    train(cfg, stop_after=2, show_progress=False)
    bigger = cfg.override(["train.batch_size=4"])
    saved = json.loads((out / "config.json").read_text())
    saved["train"]["batch_size"] = 4  # config.json edited to match the new batch size
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"train.batch_size: 2 -> 4.*checkpoints/step_2/config.json"):
        train(bigger, resume_from="latest", show_progress=False)
    (out / "config.json").unlink()  # deleted
    with pytest.raises(ValueError, match=r"train.batch_size: 2 -> 4"):
        train(bigger, resume_from="latest", show_progress=False)
    (out / "checkpoints" / "step_2" / "config.json").unlink()  # a checkpoint of an older version: its adapter's config
    capsys.readouterr()
    with pytest.raises(ValueError, match=r"train.batch_size: 2 -> 4"):
        train(bigger, resume_from="latest", show_progress=False)
    assert "has no config.json (written by an older version)" in capsys.readouterr().out
    assert not (out / "config.json").exists()  # a refused resume writes nothing
    assert train(cfg, resume_from="latest", show_progress=False).step == 4  # the run's own config resumes


# --- 4. nothing in a checkpoint is unpickled with plain pickle ---

class _Crafted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


@pytest.mark.parametrize("victim", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"])
def test_a_crafted_pickle_in_a_checkpoint_is_refused_in_one_line_and_never_runs(finished, tmp_path, capsys, victim):
    run = copy_run(finished, tmp_path / "run")
    ckpt = run / "checkpoints" / "step_2"
    marker = tmp_path / "marker"
    if victim.startswith("custom_checkpoint"):  # the layout of older checkpoints: accelerate's custom-object pickles
        (ckpt / "training_state.json").unlink(missing_ok=True)
        torch.save({"step": 2}, ckpt / "custom_checkpoint_1.pkl")
    torch.save({"state": _Crafted(marker)}, ckpt / victim)
    cfg = config_of(run, "train.max_steps=3")
    code, err = run_recipe(cfg, tmp_path, capsys, "--resume", "latest")
    assert not marker.exists()
    assert code == 2 and len(err) == 1 and victim in err[0] and "names exec" in err[0], err
    assert "step_1" not in err[0]  # refused, not silently replaced by an older checkpoint


# --- 5. a start over a run stopped before its first checkpoint ---

def test_a_start_over_a_run_stopped_before_its_first_checkpoint_logs_every_step_once(tmp_path, synthetic_cache):
    out = tmp_path / "run"
    cfg = tiny(out, "train.max_steps=3", "train.checkpoint_every=3", "train.eval_every=1", "train.eval_at_start=true")
    train(cfg, stop_after=2, show_progress=False)
    assert steps_in(out / "metrics.jsonl") == [0, 1, 2] and not (out / "checkpoints").exists()
    train(cfg, show_progress=False)
    assert steps_in(out / "metrics.jsonl") == [0, 1, 2, 3]
    rows = csv_rows(out / "log.csv")
    assert len(rows) == len(set(rows)) and ("3", "train/loss") in rows
    assert (out / "log.csv").read_text().count("step,key,value") == 1


# --- 7. the checkpoint named after a divergence is one worth resuming ---

def _blow_up_then_diverge(monkeypatch, blow_from: int, nan_from: int) -> None:
    """From step `blow_from` a BatchNorm running mean is 1e15 (finite; train-mode BN ignores it, the loss stays
    finite); from step `nan_from` the depth prediction is NaN."""
    from degmix_tuning.models.heads import TaskHead

    real_forward = TaskHead.forward
    calls = {"n": 0}

    def forward(self, x, size):
        calls["n"] += 1  # 2 heads per step in training
        step = (calls["n"] + 1) // 2
        if step >= blow_from:
            self.bottleneck[1].running_mean.fill_(1e15)
        out = real_forward(self, x, size)
        return out * float("nan") if step >= nan_from and out.shape[1] == 1 else out

    monkeypatch.setattr(TaskHead, "forward", forward)


def test_the_last_good_checkpoint_has_finite_bounded_weights(tmp_path, synthetic_cache, monkeypatch):
    _blow_up_then_diverge(monkeypatch, blow_from=3, nan_from=5)
    out = tmp_path / "run"
    cfg = tiny(out, "train.max_steps=6", "train.checkpoint_every=2", "train.keep_checkpoints=1")
    with pytest.raises(TrainingDiverged) as info:
        train(cfg, show_progress=False)
    msg = str(info.value)
    assert "step 5 in task 'depth'" in msg and f"last good checkpoint: {out / 'checkpoints' / 'step_2'}" in msg, msg
    assert re.search(r"not step_4: its weights reach [0-9.]+e\+1[45]\)", msg), msg
    # keep_checkpoints=1 keeps step_4, and step_2 too: the one to go back to
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2", "step_4"]


def test_no_good_checkpoint_is_said(tmp_path, synthetic_cache, monkeypatch):
    _blow_up_then_diverge(monkeypatch, blow_from=1, nan_from=3)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"no good checkpoint to resume from \(not step_2: its weights reach"):
        train(tiny(out, "train.max_steps=4", "train.checkpoint_every=2"), show_progress=False)


# --- 8. SIGTERM / SIGINT: a checkpoint, the adapter, one line, 143 / 130 ---

def test_sigterm_writes_a_checkpoint_and_the_adapter_then_exits_143(tmp_path, synthetic_cache):
    out = tmp_path / "run"
    config = tiny(out, "train.max_steps=100000", "train.checkpoint_every=0").save(tmp_path / "cfg.json")
    env = {**os.environ, "DEGMIX_CACHE": str(synthetic_cache), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "degmix_tuning.cli", "train", "nyud", "--config", str(config),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, log = time.time() + 90, out / "log.csv"
        while time.time() < deadline and not (log.exists() and "train/loss" in log.read_text()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    err = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("degmix-tuning train: error: stopped by SIGTERM at step"), stderr
    step = int(err[0].split("at step ")[1].split(";")[0])
    assert (out / "checkpoints" / f"step_{step}").is_dir() and f"step_{step}" in err[0]
    assert read_adapter(out)[1]["step"] == step
    assert json.loads((out / "summary.json").read_text())["step"] == step
    assert not (out / ".lock").exists()


def test_sigint_stops_after_the_step_with_a_checkpoint_and_exit_130(tmp_path, capsys, monkeypatch, synthetic_cache):
    from degmix_tuning.training import engine

    real = engine.on_step_end

    def signal_at_step_2(run, loss, parts):
        real(run, loss, parts)
        if run.progress.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(engine, "on_step_end", signal_at_step_2)
    out = tmp_path / "run"
    code, err = run_recipe(tiny(out, "train.max_steps=50"), tmp_path, capsys)
    assert code == 130 and len(err) == 1 and "stopped by SIGINT (Ctrl-C) at step 2" in err[0], err
    assert (out / "checkpoints" / "step_2").is_dir() and read_adapter(out)[1]["step"] == 2
    assert not (out / ".lock").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_ctrl_c_outside_a_run_is_one_nonempty_line():
    from degmix_tuning.errors import EXIT_INTERRUPTED, exit_code, user_message

    assert exit_code(KeyboardInterrupt(), "recipe") == EXIT_INTERRUPTED and "interrupted" in user_message(
        KeyboardInterrupt())


def test_a_resume_of_a_finished_run_keeps_its_summary(finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    before = (run / "summary.json").read_text()
    assert json.loads(before)["final_metrics"] is not None
    result = train(config_of(run), resume_from="latest", show_progress=False)
    assert (run / "summary.json").read_text() == before
    assert result.final_metrics == json.loads(before)["final_metrics"]


# --- the lock file, failed starts ---

def test_a_finished_or_failed_run_leaves_no_lock_file(finished, tmp_path, synthetic_cache, monkeypatch):
    assert not (finished / ".lock").exists()
    from degmix_tuning.training import engine

    def crash(run, loss, parts):
        raise ZeroDivisionError("a bug at step 1")

    monkeypatch.setattr(engine, "on_step_end", crash)
    out = tmp_path / "run"
    with pytest.raises(ZeroDivisionError):
        train(tiny(out), show_progress=False)
    assert out.is_dir() and not (out / ".lock").exists()  # a run that started keeps its folder


def test_a_failed_start_leaves_no_run_folder_and_never_removes_earlier_contents(tmp_path, synthetic_cache):
    bad = ["data.synthetic=false", f"data.root={tmp_path / 'no_such_data'}", "random_backbone=true"]
    new = tmp_path / "a" / "b" / "run"
    with pytest.raises(FileNotFoundError):
        train(tiny(new, *bad), show_progress=False)
    assert not (tmp_path / "a").exists()  # the folders this start created are gone
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError):
        train(tiny(earlier, *bad), show_progress=False)
    assert sorted(p.name for p in earlier.iterdir()) == ["notes.txt"]


# --- adapters with NaN/inf ---

def test_an_adapter_with_non_finite_weights_is_refused_naming_the_file_and_tensor(finished, tmp_path, capsys):
    from safetensors import safe_open

    from degmix_tuning.cli import main

    run = copy_run(finished, tmp_path / "run")
    path = run / "adapter.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    key = sorted(tensors)[3]
    tensors[key] = tensors[key].clone().view(-1).index_fill_(0, torch.tensor([0]), float("inf")).view_as(tensors[key])
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match=rf"adapter.safetensors.*non-finite weights \({key}: 1 of"):
        load_tuned(path)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "adapter.safetensors" in err[0]
