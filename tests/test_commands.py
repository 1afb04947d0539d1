"""Every command's input mistakes end in one line `error: ...` with exit status 2; bugs keep their traceback.
Hydra's own errors are produced by composing the real config, as train.py does."""
import errno
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ravlt.commands import ArgumentParser, one_line, run_command
from ravlt.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def composing(*overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def raised_by(function, *args) -> BaseException:
    with pytest.raises(Exception) as caught:
        function(*args)
    return caught.value


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model=ravlt_x", "model=... takes one of: ravlt_b, ravlt_l, ravlt_s, ravlt_t"),
        ("hardware=tpu", "hardware=... takes one of: cpu, cpu_ddp, gpu, gpus, slurm"),
        ("task.max_epoch=3", "To append to your config use +task.max_epoch=3"),
        ("task.max_epochs=[", "cannot read the override 'task.max_epochs=['"),
    ],
)  # fmt: skip
def test_hydra_composition_mistakes_are_one_line(override, expected):
    line = one_line(raised_by(composing, override))
    assert line is not None and "\n" not in line and expected in line


def test_a_missing_required_value_names_the_key():
    cfg = OmegaConf.create({"checkpoint": "???"})
    line = one_line(raised_by(lambda: cfg.checkpoint))
    assert line == "checkpoint=... is required: add it to the command line"


def test_file_errors_name_the_file_and_other_errors_are_bugs():
    assert one_line(raised_by(open, "/nonexistent/x.pth")) == "No such file or directory: /nonexistent/x.pth"
    assert one_line(OSError(errno.ENOSPC, "No space left on device", "/out/last.ckpt")).startswith("No space left")
    assert one_line(KeyError("layers.0")) is None and one_line(ZeroDivisionError()) is None
    assert one_line(OSError("socket closed")) is None  # no file to name: not an input mistake


def test_an_error_raised_in_a_dataloader_worker_reports_its_last_line():
    text = "Caught FileNotFoundError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n" \
           '  File "x.py", line 1\nFileNotFoundError: [Errno 2] No such file or directory: \'/d/a.jpg\''  # fmt: skip
    # how torch re-raises it in the main process: same type, the worker's traceback as the message
    assert one_line(FileNotFoundError(text)) == "[Errno 2] No such file or directory: '/d/a.jpg'"


def test_run_command_prints_one_line_and_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("RAVLT_FULL_ERROR", raising=False)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")

    def bad():
        raise ConfigError("dataset.root=/x: not found.\n  Set dataset.root=/path")

    with pytest.raises(SystemExit) as exit:
        run_command(bad)
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: dataset.root=/x: not found. Set dataset.root=/path\n"
    assert run_command(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):  # a bug: its traceback is wanted
        run_command(lambda: 1 / 0)


def test_hydra_full_error_keeps_the_traceback(monkeypatch):
    monkeypatch.delenv("RAVLT_FULL_ERROR", raising=False)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        run_command(lambda: (_ for _ in ()).throw(ConfigError("x")))


def test_argument_mistakes_are_one_line(capsys):
    parser = ArgumentParser(prog="ravlt-x")
    parser.add_argument("--size", type=int, required=True)
    with pytest.raises(SystemExit) as exit:
        parser.parse_args(["--size", "big"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: argument --size: invalid int value: 'big' (see ravlt-x --help)\n"


@pytest.mark.parametrize(
    "command, expected",
    [
        (["train.py", "model=ravlt_x"], "error: Could not find 'model/ravlt_x'; model=... takes one of: ravlt_b"),
        (["predict.py"], "error: checkpoint=... is required: add it to the command line"),
        (["-m", "ravlt.train", "model=ravlt_x"], "error: Could not find 'model/ravlt_x'; model=... takes one of"),
        (["-m", "ravlt.train", "task=detection", "dataset=digits"],
         "error: dataset=digits is a classification dataset"),
        (["-m", "ravlt.predict"], "error: checkpoint=... is required: add it to the command line"),
    ],
)  # fmt: skip
def test_entry_points_print_one_line_and_no_traceback(command, expected):
    env = {"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin", "HYDRA_FULL_ERROR": "0"}
    done = subprocess.run([sys.executable, *command], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr
