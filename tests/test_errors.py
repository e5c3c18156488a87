"""One table from user-caused errors to one line and an exit code (degmix_tuning/errors.py), at every entry point."""

from __future__ import annotations

import errno
import pickle

import pytest

from degmix_tuning.data.formats import DataFileError
from degmix_tuning.errors import EXIT_COMMAND, EXIT_DIVERGED, EXIT_RECIPE, exit_code, user_message
from degmix_tuning.training.engine import TrainingDiverged

WORKER = ("Caught DataFileError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
          '  File "/x/worker.py", line 349, in _worker_loop\n    data = fetcher.fetch(index)\n'
          "degmix_tuning.data.formats.DataFileError: /data/NYUDv2/images/0001.png: cannot decode the image")


def test_user_errors_are_one_line_with_the_cause_and_fix():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/step_4.tmp/model.safetensors")
    assert "no space left" in user_message(full) and "step_4.tmp" in user_message(full)
    assert "choose a folder you can write" in user_message(PermissionError(errno.EACCES, "denied", "/ro/run"))
    assert "a file stands where a folder is needed" in user_message(NotADirectoryError(20, "x", "/runs/file"))
    assert user_message(KeyError("unknown backbone 'x'. Did you mean 'swin_t'?")).startswith("unknown backbone")
    for msg in (user_message(RuntimeError(WORKER)), user_message(ValueError(WORKER))):
        assert msg == "/data/NYUDv2/images/0001.png: cannot decode the image"
    assert user_message(RuntimeError("a bug")) is None and user_message(AssertionError()) is None


def test_exit_codes():
    assert exit_code(ValueError("x"), "command") == EXIT_COMMAND
    assert exit_code(ValueError("x"), "recipe") == EXIT_RECIPE
    assert exit_code(TrainingDiverged("nan"), "recipe") == EXIT_DIVERGED
    assert exit_code(ZeroDivisionError(), "recipe") is None  # a bug keeps its traceback


def test_data_file_error_survives_a_worker_re_raise_and_pickling():
    rebuilt = DataFileError(WORKER)  # what torch's worker re-raise does: the class called with the whole message
    assert str(rebuilt) == "/data/NYUDv2/images/0001.png: cannot decode the image"
    assert rebuilt.path == "/data/NYUDv2/images/0001.png" and rebuilt.problem == "cannot decode the image"
    err = pickle.loads(pickle.dumps(DataFileError("/d/x.npy", "holds NaN")))
    assert (err.path, err.problem) == ("/d/x.npy", "holds NaN")


def test_cli_prints_one_line_and_debug_keeps_the_traceback(tmp_path, capsys):
    from degmix_tuning.cli import main

    missing = tmp_path / "no_run"
    assert main(["evaluate", str(missing)]) == EXIT_COMMAND
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no_run" in err
    with pytest.raises(FileNotFoundError):
        main(["evaluate", str(missing), "--debug"])


def test_recipe_unwritable_output_dir_is_one_line(tmp_path, capsys):
    from degmix_tuning.training.recipe import main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main("nyud", ["--synthetic", "--output-dir", str(blocker / "run"), "--max-steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_RECIPE and len(err) == 1 and "a file stands where a folder is needed" in err[0]
