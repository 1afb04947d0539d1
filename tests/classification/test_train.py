"""Classification runs end to end: training on digits, evaluation of our and released checkpoints,
skipping a truncated JPEG, resuming after SIGKILL, SIGUSR1 (requeue) and SIGTERM, and bad input.
(Several processes and nodes: tests/test_multinode.py.)"""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from ravlt import tasks
from ravlt.models import CheckpointMismatchError
from ravlt.tasks import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
QUIET = ["hardware=cpu", "hardware.num_workers=0", "logger=csv", "task.progress_bar=false", "task.log_images=0"]


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["task=classification", *QUIET, *overrides])


def run_in_process(output_dir: Path, *overrides: str) -> dict:
    tasks.run(compose_cfg(*overrides, f"output_dir={output_dir}"))
    return json.loads((output_dir / "metrics.json").read_text())


def train_py(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """``python train.py ARGS`` (``env`` added to this process's environment; tests/ importable)."""
    path = os.pathsep.join(str(PROJECT_ROOT / d) for d in ("src", "tests"))
    env = {**os.environ, "PYTHONPATH": path, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=PROJECT_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,
    )  # fmt: skip


def logged(csv_path: Path, column: str) -> dict[int, float]:
    """``{step: value}`` of one column of a Lightning metrics.csv (first value per step)."""
    values: dict[int, float] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            if row.get(column):
                values.setdefault(int(row["step"]), float(row[column]))
    return values


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


# --- a short digits training, shared by the checks on what it leaves behind ---------------------------
DIGITS_EPOCHS, DIGITS_BATCH = 2, 64


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, digits_dir):
    out = tmp_path_factory.mktemp("digits_run")
    metrics = run_in_process(
        out, "experiment=digits_demo", f"dataset.root={digits_dir}", f"task.max_epochs={DIGITS_EPOCHS}",
        f"task.batch_size={DIGITS_BATCH}", "task.log_every_n_steps=1",
    )  # fmt: skip
    yield out, metrics
    shutil.rmtree(out, ignore_errors=True)  # two RAVLT-T checkpoints with optimizer state and EMA: ~450 MB


@pytest.mark.slow
def test_digits_training_learns_and_leaves_metrics_and_checkpoints(digits_run):
    out, metrics = digits_run
    assert metrics["val/top1"] > 0.6  # chance is 0.1
    steps = DIGITS_EPOCHS * (1437 // DIGITS_BATCH)
    assert (metrics["epoch"], metrics["global_step"]) == (DIGITS_EPOCHS, steps)
    assert {"val/top5", "val/loss", "val/ema_top1", "val/ema_top5", "val/top1_best", "train/loss"} <= set(metrics)
    assert metrics["data/unreadable_images"] == 0 and metrics["model/params"] > 10e6
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "last.ckpt" in names and any(n.startswith("best-epoch") for n in names)
    assert not [n for n in names if n.startswith(".")]  # no temporary file left by the atomic writer

    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    raw, ema = state["model.head.weight"], state["model_ema.module.head.weight"]
    assert raw.shape == ema.shape and not torch.equal(raw, ema)  # the EMA is its own set of weights
    assert checkpoint["global_step"] == steps and checkpoint["optimizer_states"][0]["state"]
    assert "RngStateCheckpoint" in checkpoint["callbacks"]
    hparams = checkpoint["hyper_parameters"]  # what predict.py reads to name the classes and size the input
    assert hparams["class_names"] == [str(d) for d in range(10)] and hparams["image_size"] == 32


@pytest.mark.slow
def test_learning_rate_follows_warmup_then_cosine_every_step(digits_run):
    out, _ = digits_run
    cfg = compose_cfg("experiment=digits_demo")
    lr, warmup_lr, min_lr = cfg.task.optimizer.lr, cfg.task.scheduler.warmup_lr, cfg.task.scheduler.min_lr
    per_epoch = 1437 // DIGITS_BATCH
    total, warmup = DIGITS_EPOCHS * per_epoch, cfg.task.scheduler.warmup_epochs * per_epoch
    lrs = logged(out / "metrics.csv", "lr-AdamW/pg1")
    assert len(lrs) >= total - 1
    for step, value in lrs.items():
        if step < warmup:
            expected = warmup_lr + step * (lr - warmup_lr) / warmup
        else:
            expected = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / total))
        assert value == pytest.approx(expected, rel=1e-5), step


@pytest.mark.slow
def test_eval_mode_reproduces_the_last_validation(digits_run, digits_dir, tmp_path):
    out, trained = digits_run
    metrics = run_in_process(
        tmp_path / "eval", "experiment=digits_demo", f"dataset.root={digits_dir}", "task.mode=eval",
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
    )  # fmt: skip
    for key in ("val/top1", "val/top5", "val/ema_top1", "val/ema_top5"):
        assert metrics[key] == pytest.approx(trained[key], abs=1e-6), key
    with pytest.raises(ConfigError, match="attn_types=llvv"):  # same weights, other attention: refused
        run_in_process(
            tmp_path / "pure_linear", "experiment=digits_demo", f"dataset.root={digits_dir}", "task.mode=eval",
            f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "model.attn_types=llll",
        )  # fmt: skip


@pytest.mark.slow
def test_eval_mode_reads_released_style_checkpoints_and_rejects_other_variants(digits_run, digits_dir, tmp_path):
    out, trained = digits_run
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    released = {  # docs/method.md §7: DeiT-style, weights under `model` and `model_ema`
        "model": {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")},
        "model_ema": {k.removeprefix("model_ema.module."): v for k, v in state.items() if k.startswith("model_ema.")},
        "epoch": 1,
    }
    torch.save(released, tmp_path / "RAVLT_T.pth")
    common = ["experiment=digits_demo", f"dataset.root={digits_dir}", "task.mode=eval",
              f"ckpt_path={tmp_path / 'RAVLT_T.pth'}"]  # fmt: skip
    metrics = run_in_process(tmp_path / "eval", *common)
    assert metrics["val/top1"] == pytest.approx(trained["val/top1"], abs=1e-6)
    assert metrics["val/ema_top1"] == pytest.approx(trained["val/ema_top1"], abs=1e-6)

    torch.save(released["model"], tmp_path / "bare.pth")  # a bare state dict: no EMA to evaluate
    bare = run_in_process(tmp_path / "bare", *common[:-1], f"ckpt_path={tmp_path / 'bare.pth'}")
    assert bare["val/top1"] == pytest.approx(trained["val/top1"], abs=1e-6) and "val/ema_top1" not in bare

    with pytest.raises(CheckpointMismatchError, match="ravlt_t"):
        run_in_process(tmp_path / "wrong", *common, "model=ravlt_s")


# --- skipping unreadable images -----------------------------------------------------------------------
@pytest.mark.slow
def test_fast_dev_run_skips_a_truncated_jpeg_and_counts_it(tmp_path, make_image_folder, write_truncated_jpeg, caplog):
    root = make_image_folder(tmp_path / "colours")
    broken = write_truncated_jpeg(root / "train" / "red" / "broken.jpg")
    metrics = run_in_process(
        tmp_path / "run", "dataset=image_folder", f"dataset.root={root}", "dataset.image_size=32",
        "task.batch_size=13", "+task.trainer.fast_dev_run=true",  # one batch: all 13 train files
    )  # fmt: skip
    assert metrics["data/unreadable_images"] == 1
    assert metrics["global_step"] == 1 and math.isfinite(metrics["train/loss"])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(broken) in w and "skipping unreadable image" in w for w in warnings)
    assert any("1 unreadable image(s) were skipped" in w for w in warnings)


# --- resuming -----------------------------------------------------------------------------------------
RESUME = ["task=classification", "experiment=digits_demo", "hardware=cpu", "hardware.num_workers=0", "logger=csv",
          "task.progress_bar=false", "task.max_epochs=3", "task.batch_size=16", "+task.trainer.limit_train_batches=8",
          "+task.trainer.limit_val_batches=2", "task.log_every_n_steps=1"]  # fmt: skip


def checkpoint_state(path: Path) -> dict:
    checkpoint = torch.load(path, weights_only=True)
    optimizer = checkpoint["optimizer_states"][0]
    return {
        "global_step": checkpoint["global_step"],
        "epoch": checkpoint["epoch"],
        "model": {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")},
        "ema": {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model_ema.")},
        "exp_avg": [s["exp_avg"] for _, s in sorted(optimizer["state"].items())],
        "scheduler": checkpoint["lr_schedulers"][0],
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert (a["global_step"], a["epoch"], a["scheduler"]) == (b["global_step"], b["epoch"], b["scheduler"])
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=1e-6, msg=f"{part} {k}")
    for x, y in zip(a["exp_avg"], b["exp_avg"], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, digits_dir) -> dict:
    """The final state of a RESUME run that nothing interrupted."""
    out = tmp_path_factory.mktemp("uninterrupted")
    finish(train_py(*RESUME, f"hydra.run.dir={out}", env={"RAVLT_DATA_DIR": str(digits_dir.parent)}))
    state = checkpoint_state(out / "checkpoints" / "last.ckpt")
    shutil.rmtree(out, ignore_errors=True)  # only the state is needed from here on
    assert (state["global_step"], state["epoch"]) == (3 * 8, 2)  # saved after the third (0-based 2) epoch
    return state


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(tmp_path, data_env, uninterrupted):
    killed_dir = tmp_path / "killed"
    last = killed_dir / "checkpoints" / "last.ckpt"
    victim = train_py(*RESUME, f"hydra.run.dir={killed_dir}")
    deadline = time.monotonic() + 300
    while not last.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), "no checkpoint written after the first epoch"
    time.sleep(0.5)  # into the second epoch's 8 steps, before its checkpoint
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    saved = checkpoint_state(last)
    assert saved["global_step"] == 8, "the run was not killed during its second epoch"

    resumed_dir = tmp_path / "resumed"
    output = finish(train_py(*RESUME, f"ckpt_path={last}", f"hydra.run.dir={resumed_dir}"))
    assert "Restoring states from the checkpoint" in output or "Restored all states" in output
    assert min(logged(resumed_dir / "metrics.csv", "train/loss")) >= 8  # went on from the saved step, not from 0
    assert_same_state(checkpoint_state(resumed_dir / "checkpoints" / "last.ckpt"), uninterrupted)


def signal_at(step: int, name: str, group: bool = False) -> list[str]:
    node = "+task.callbacks.signal"
    return [f"{node}._target_=signal_at_step.SignalAtStep", f"{node}.step={step}", f"{node}.name={name}",
            f"{node}.group={str(group).lower()}"]  # fmt: skip


def stopped(process: subprocess.Popen, signum: int) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 128 + signum, output[-4000:]
    return output


@pytest.fixture
def scontrol(tmp_path) -> tuple[dict, Path]:
    """A stand-in ``scontrol`` first on PATH that records its arguments, and a SLURM job's variables."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}, calls


@pytest.mark.slow
def test_sigusr1_checkpoints_requeues_and_the_requeued_job_continues_exactly(tmp_path, data_env, uninterrupted,
                                                                             scontrol):  # fmt: skip
    """SLURM's time-limit warning mid-epoch: the run saves last.ckpt after that step, requeues the job and stops;
    the requeued job (same run directory, SLURM_RESTART_COUNT=1) ends exactly where the uninterrupted run did."""
    slurm, calls = scontrol
    run_dir = tmp_path / "job"
    output = stopped(train_py(*RESUME, *signal_at(11, "SIGUSR1"), f"hydra.run.dir={run_dir}", env=slurm),
                     signal.SIGUSR1)  # fmt: skip
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert f"stopped by SIGUSR1 at step 12: resumable checkpoint written to {checkpoint}" in output
    assert calls.read_text() == "requeue 4242\n"
    saved = checkpoint_state(checkpoint)
    assert (saved["global_step"], saved["epoch"]) == (12, 1)  # mid-epoch: the 4th of 8 steps of epoch 1
    assert not (run_dir / "metrics.json").exists()
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]  # no partial file

    output = finish(train_py(*RESUME, f"hydra.run.dir={run_dir}", env={**slurm, "SLURM_RESTART_COUNT": "1"}))
    assert f"requeued SLURM job: resuming from {checkpoint}" in output
    assert_same_state(checkpoint_state(checkpoint), uninterrupted)
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 24


@pytest.mark.slow
def test_sigterm_to_the_process_group_checkpoints_without_requeue_and_dataloader_workers_survive_it(
    tmp_path, data_env, uninterrupted, scontrol
):
    """SIGTERM reaches every process of the job, DataLoader workers included (SLURM preemption, scancel): the
    run still checkpoints and stops, without requeueing; resumed with ckpt_path= and 2 workers instead of
    none, it ends exactly where the uninterrupted run did (augmentation does not depend on the workers)."""
    slurm, calls = scontrol
    workers = ["hardware.num_workers=2"]
    run_dir = tmp_path / "preempted"
    process = train_py(*RESUME, *workers, *signal_at(11, "SIGTERM", group=True), f"hydra.run.dir={run_dir}",
                       env=slurm, start_new_session=True)  # fmt: skip
    output = stopped(process, signal.SIGTERM)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert (
        f"stopped by SIGTERM at step 12: resumable checkpoint written to {checkpoint}; resume with ckpt_path="
        in output
    )
    assert not calls.exists()  # SIGTERM may be scancel: never requeued
    assert checkpoint_state(checkpoint)["global_step"] == 12

    resumed_dir = tmp_path / "resumed"
    finish(train_py(*RESUME, *workers, f"ckpt_path={checkpoint}", f"hydra.run.dir={resumed_dir}"))
    assert_same_state(checkpoint_state(resumed_dir / "checkpoints" / "last.ckpt"), uninterrupted)


# --- bad input ------------------------------------------------------------------------------------------
def test_missing_dataset_root_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_ROOT", raising=False)
    process = train_py("task=classification", "dataset=imagenet", "hardware=cpu", "logger=none",
                       f"hydra.run.dir={tmp_path}")  # fmt: skip
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "IMAGENET_ROOT" in output and "dataset.root" in output and "dataset=digits" in output


def _class_folders(root: Path, layout: dict[str, dict[str, int]], content=None) -> Path:
    """``layout``: split -> class -> number of images (``content`` writes one; a PNG by default)."""
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                path = root / split / name / f"{i}.png"
                content(path) if content else Image.new("RGB", (32, 32), (40 * i, 90, 30)).save(path)
    return root


@pytest.mark.parametrize(
    "layout, content, message",
    [
        ({"train": {"a": 2, "b": 0}, "val": {"a": 1, "b": 1}}, None, r"train: Found no valid file for the classes b"),
        ({"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1, "c": 1}}, None, r"class folders of .*val \(3\) differ"),
        ({"train": {"a": 2, "b": 2}, "val": {"a": 2, "b": 2}}, lambda p: p.write_text("version https://git-lfs"),
         r"none of 4 images sampled across .*train could be read \(0.png: UnidentifiedImageError"),
    ],
    ids=["empty-class", "other-classes", "nothing-readable"],
)  # fmt: skip
def test_class_folders_that_cannot_train_name_the_folder(tmp_path, layout, content, message):
    root = _class_folders(tmp_path / "data", layout, content)
    with pytest.raises(ConfigError, match=message):
        run_in_process(tmp_path / "run", "dataset=image_folder", f"dataset.root={root}", "dataset.image_size=32",
                       "task.batch_size=2", "task.max_epochs=1")  # fmt: skip
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_mode_and_checkpoint_mistakes_are_config_errors(tmp_path, data_env):
    with pytest.raises(ConfigError, match="needs ckpt_path"):
        run_in_process(tmp_path, "dataset=digits", "task.mode=eval")
    with pytest.raises(ConfigError, match="not one of"):
        run_in_process(tmp_path, "dataset=digits", "task.mode=test")
    torch.save({"model": {}}, tmp_path / "released.pth")
    with pytest.raises(ConfigError, match="model.pretrained"):
        run_in_process(tmp_path, "dataset=digits", f"ckpt_path={tmp_path / 'released.pth'}")
    with pytest.raises(ConfigError, match="detection dataset"):
        run_in_process(tmp_path, "dataset=shapes_coco")


# --- W&B ---------------------------------------------------------------------------------------------------
def finished_records(path: Path, timeout: float = 30.0) -> bytes:
    """The bytes of a W&B transaction log once its writer has stopped: ``run.finish()`` can return while
    wandb-core's writer is still flushing (seen under load: the header alone, the records a moment later)."""
    deadline, size = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        size, previous = path.stat().st_size, size
        if size == previous and size > 7:  # more than the 7-byte header, and no longer growing
            break
        time.sleep(0.5)
    return path.read_bytes()


@pytest.mark.slow
def test_wandb_offline_run_has_config_params_metrics_and_labelled_val_images(
    tmp_path, make_image_folder, monkeypatch, capsys
):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's own default must be offline
    root = make_image_folder(tmp_path / "colours")
    out = tmp_path / "run"
    metrics = run_in_process(
        out, "logger=wandb", "dataset=image_folder", f"dataset.root={root}", "dataset.image_size=32",
        "task.batch_size=6", "task.max_epochs=1", "task.log_images=4", "task.log_every_n_steps=1",
        "+task.trainer.limit_train_batches=2",
    )  # fmt: skip
    hint = [line for line in capsys.readouterr().out.splitlines() if "wandb sync" in line]
    assert len(hint) == 1
    run_dir = Path(hint[0].split("wandb sync", 1)[1].strip())
    assert run_dir.name.startswith("offline-run-") and run_dir.is_relative_to(out)
    records = finished_records(next(run_dir.glob("run-*.wandb")))  # what `wandb sync` would upload
    for logged in (b"model/params", b"rand-m9-mstd0.5-inc1", b"val/top1", b"lr-AdamW", b"val/examples", b"pred "):
        assert logged in records, logged
    images = list((run_dir / "files" / "media" / "images" / "val").glob("examples_*.png"))
    assert len(images) == 4  # 4 distinct validation images (W&B stores identical ones once)
    assert all(np.asarray(Image.open(p)).max() > 100 for p in images)  # real pixels, not a black square
    assert metrics["model/params"] > 10e6 and (out / "metrics.csv").exists()
