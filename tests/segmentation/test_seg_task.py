"""`task=segmentation` through Hydra: every segmentor x model composes into an mmengine config carrying the
overrides; bad data roots fail clearly; evaluation of a checkpoint returns mIoU / mAcc / aAcc and counts
out-of-range labels; the CLI trains, draws validation pictures and evaluates end to end; a signalled run
checkpoints, requeues and resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from mmengine.config import Config

from ravlt.data.shapes_ade import CLASSES
from ravlt.models import VARIANTS, CheckpointMismatchError
from ravlt.tasks import ConfigError, segmentation

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SEGMENTORS = ["fpn_80k", "upernet_160k", "fpn_demo"]
MODELS = list(VARIANTS)
METRIC_KEYS = {"mIoU", "mAcc", "aAcc", "invalid_label_pixels"}


def _shapes(root, spec) -> list[str]:
    args = ",".join(f"{k}:{getattr(spec, k)}" for k in ("num_train", "num_val", "image_size", "seed"))
    return ["dataset=shapes_ade", f"dataset.root={root}", f"dataset.generator_args={{{args}}}"]


@pytest.mark.parametrize("segmentor", SEGMENTORS)
@pytest.mark.parametrize("model", MODELS)
def test_every_segmentor_and_model_composes_with_overrides(segmentor, model, compose_run, ade_root):
    cfg = compose_run(
        "task=segmentation", f"model={model}", f"segmentor={segmentor}", "dataset=ade20k", f"dataset.root={ade_root}",
        "hardware=cpu", "logger=csv", "seed=7", "task.batch_size=4", "task.max_iters=300", "task.val_interval=50",
        "task.vis_interval=3", "+task.cfg_options.optim_wrapper.optimizer.lr=3e-4", "model.drop_path_rate=0.2",
        "model.attn_types=llll",
    )  # fmt: skip
    mm_cfg = segmentation.build_config(cfg)
    size = model[-1]
    name = Path(mm_cfg.filename).name
    if segmentor == "fpn_demo":
        assert name == "fpn_ravlt-t_slim_shapes-ade-128x128.py"
    else:  # the paper has no UperNet-T: the S config with the backbone switched
        assert f"ravlt-{'s' if (segmentor, size) == ('upernet_160k', 't') else size}_" in name
    dims = list(VARIANTS[model].embed_dims)
    backbone = mm_cfg.model.backbone
    assert (backbone.arch, backbone.drop_path_rate, backbone.attn_types) == (model, 0.2, "llll")
    assert backbone.get("init_cfg") is None  # model.pretrained=null: from scratch, with a warning
    if mm_cfg.model.get("neck"):
        assert mm_cfg.model.neck.in_channels == dims
    else:
        assert mm_cfg.model.decode_head.in_channels == dims and mm_cfg.model.auxiliary_head.in_channels == dims[2]
        assert mm_cfg.model.auxiliary_head.num_classes == 150
    assert mm_cfg.model.decode_head.num_classes == 150
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = mm_cfg[loader].dataset
        assert dataset.data_root == str(ade_root / "ADEChallengeData2016") and dataset.type == "ADE20KDataset"
        assert "metainfo" not in dataset  # ADE20K's own 150 classes
    assert [t.num_classes for t in mm_cfg.train_dataloader.dataset.pipeline if "num_classes" in t] == [150]
    assert mm_cfg.train_dataloader.batch_size == 4
    assert mm_cfg.train_cfg.max_iters == 300 and mm_cfg.train_cfg.val_interval == 50
    assert mm_cfg.param_scheduler[-1].end == 300  # poly decay ends with the shortened run
    assert all(s.end <= 300 for s in mm_cfg.param_scheduler)
    assert mm_cfg.default_hooks.visualization.interval == 3 and mm_cfg.default_hooks.visualization.draw
    assert mm_cfg.optim_wrapper.optimizer.lr == 3e-4
    assert mm_cfg.optim_wrapper.type == "OptimWrapper"  # fp32 on the CPU
    assert mm_cfg.randomness.seed == 7 and mm_cfg.launcher == "none"
    assert mm_cfg.work_dir == str(cfg.output_dir)
    assert mm_cfg.model.test_cfg.mode == "whole"
    Config(mm_cfg.to_dict())  # still a valid mmengine config


def test_sliding_window_test_mode(compose_run, ade_root):
    cfg = compose_run("task=segmentation", "model=ravlt_s", "segmentor=upernet_160k", "segmentor.test_mode=slide",
                      "dataset=ade20k", f"dataset.root={ade_root}", "hardware=cpu", "logger=csv")  # fmt: skip
    assert segmentation.build_config(cfg).model.test_cfg == dict(mode="slide", crop_size=(512, 512), stride=(341, 341))
    cfg = compose_run("task=segmentation", "segmentor.test_mode=tiles", "dataset=ade20k", f"dataset.root={ade_root}",
                      "model=ravlt_s", "hardware=cpu", "logger=csv")  # fmt: skip
    with pytest.raises(ConfigError, match="whole' or 'slide"):
        segmentation.build_config(cfg)


def test_pretrained_checkpoint_and_wandb_land_in_the_config(compose_run, ade_root, tmp_path):
    ckpt = tmp_path / "RAVLT_S.pth"
    torch.save({"model": timm.create_model("ravlt_s").state_dict()}, ckpt)  # released layout
    cfg = compose_run("task=segmentation", "model=ravlt_s", "dataset=ade20k", f"dataset.root={ade_root}",
                      "hardware=cpu", "logger=wandb", f"model.pretrained={ckpt}")  # fmt: skip
    mm_cfg = segmentation.build_config(cfg)
    assert Path(mm_cfg.filename).name == "upernet_ravlt-s_8xb2-160k_ade20k-512x512.py"  # the default segmentor
    assert mm_cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint=str(ckpt))
    assert {b["type"] for b in mm_cfg.visualizer.vis_backends} == {"LocalVisBackend", "ravlt.WandbVisBackend"}
    assert mm_cfg.default_hooks.visualization.draw  # validation pictures go to every backend


def test_shapes_dataset_is_generated_on_first_use_with_its_classes(compose_run, tmp_path, tiny_spec):
    root = tmp_path / "generated" / "shapes_ade"
    cfg = compose_run("task=segmentation", "model=ravlt_t", "segmentor=fpn_demo", *_shapes(root, tiny_spec),
                      "hardware=cpu", "logger=csv")  # fmt: skip
    mm_cfg = segmentation.build_config(cfg)
    assert len(list((root / "ADEChallengeData2016" / "images" / "validation").glob("*.jpg"))) == tiny_spec.num_val
    dataset = mm_cfg.val_dataloader.dataset
    assert dataset.type == "BaseSegDataset" and dataset.metainfo.classes == CLASSES
    assert dataset.metainfo.palette[1] == (230, 25, 75)  # the dataset's overlay colours
    assert mm_cfg.model.decode_head.num_classes == len(CLASSES)


@pytest.mark.parametrize("missing", ["root", "images/training", "annotations/validation"])
def test_missing_ade20k_data_names_the_path_the_key_and_the_variable(missing, compose_run, ade_root, tmp_path):
    import shutil

    root = tmp_path / "elsewhere"
    if missing != "root":
        shutil.copytree(ade_root, root)
        shutil.rmtree(root / "ADEChallengeData2016" / missing)
    cfg = compose_run("task=segmentation", "model=ravlt_s", "dataset=ade20k", f"dataset.root={root}",
                      "hardware=cpu", "logger=csv")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        segmentation.build_config(cfg)
    message = str(err.value)
    assert str(root / "ADEChallengeData2016" / missing if missing != "root" else root) in message
    assert "dataset.root=" in message and "ADE20K_ROOT" in message


def test_ade20k_root_comes_from_the_environment(monkeypatch, compose_run, ade_root):
    monkeypatch.setenv("ADE20K_ROOT", str(ade_root / "ADEChallengeData2016"))  # the inner folder is accepted too
    cfg = compose_run("task=segmentation", "model=ravlt_s", "dataset=ade20k", "hardware=cpu", "logger=csv")
    mm_cfg = segmentation.build_config(cfg)
    assert mm_cfg.val_dataloader.dataset.data_root == str(ade_root / "ADEChallengeData2016")


def _demo_checkpoint(tmp_path) -> Path:
    """A Semantic FPN checkpoint as mmengine saves one (``backbone.*`` with ``extra_norms``, heads)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from ravlt.mm.settings import load_config

    config = load_config(PROJECT_ROOT / "segmentation/configs/fpn_ravlt-t_slim_shapes-ade-128x128.py")
    init_default_scope("mmseg")
    ckpt = tmp_path / "fpn_demo.pth"
    torch.save({"meta": {}, "state_dict": MODELS.build(config.model).state_dict()}, ckpt)
    return ckpt


def test_evaluation_gives_miou_and_counts_out_of_range_labels(compose_run, corrupt_shapes_root, tiny_spec, tmp_path):
    ckpt = _demo_checkpoint(tmp_path)
    cfg = compose_run("task=segmentation", "task.mode=eval", f"ckpt_path={ckpt}", "model=ravlt_t", "segmentor=fpn_demo",
                      *_shapes(corrupt_shapes_root, tiny_spec), "hardware=cpu", "logger=csv")  # fmt: skip
    metrics = segmentation.run(cfg)
    assert METRIC_KEYS <= metrics.keys()
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("mIoU", "mAcc", "aAcc"))
    assert metrics["invalid_label_pixels"] == 100  # the 10x10 patch of value 200 in one validation label map


def test_evaluating_a_checkpoint_of_another_variant_fails_loudly(compose_run, shapes_ade_root, tiny_spec, tmp_path):
    ckpt = _demo_checkpoint(tmp_path)  # RAVLT-T weights, evaluated as RAVLT-S
    cfg = compose_run("task=segmentation", "task.mode=eval", f"ckpt_path={ckpt}", "model=ravlt_s", "segmentor=fpn_demo",
                      *_shapes(shapes_ade_root, tiny_spec), "hardware=cpu", "logger=csv")  # fmt: skip
    with pytest.raises(CheckpointMismatchError, match="its backbone looks like ravlt_t"):
        segmentation.run(cfg)


@pytest.mark.slow
def test_cli_trains_draws_and_evaluates_its_checkpoint(shapes_ade_root, tiny_spec, tmp_path):
    """`python train.py task=segmentation ...` end to end on the tiny dataset: train, metrics.json,
    validation pictures on disk, then task.mode=eval of the saved checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"), "WANDB_MODE": "offline"}
    common = ["task=segmentation", "model=ravlt_t", "segmentor=fpn_demo", *_shapes(shapes_ade_root, tiny_spec),
              "hardware=cpu", "hardware.num_workers=0", "logger=csv"]  # fmt: skip
    train_dir = tmp_path / "train"
    subprocess.run([sys.executable, "train.py", *common, "task.max_iters=4", "task.val_interval=2", "task.batch_size=2",
                    "task.vis_interval=1", f"hydra.run.dir={train_dir}"], cwd=PROJECT_ROOT, env=env, check=True,
                   timeout=600)  # fmt: skip
    metrics = json.loads((train_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys() and metrics["invalid_label_pixels"] == 0
    checkpoint = train_dir / "iter_4.pth"
    assert checkpoint.is_file()
    pictures = list(train_dir.glob("*/vis_data/vis_image/val_*.png"))
    assert pictures, "validation images with true and predicted masks are saved locally"

    eval_dir = tmp_path / "eval"
    subprocess.run([sys.executable, "train.py", *common, "task.mode=eval", f"ckpt_path={checkpoint}",
                    f"hydra.run.dir={eval_dir}"], cwd=PROJECT_ROOT, env=env, check=True, timeout=600)  # fmt: skip
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-4)
    assert list(eval_dir.glob("*/vis_data/vis_image/test_*.png"))


@pytest.mark.slow
def test_demo_segmentor_learns_the_shapes(compose_run, tmp_path):
    """Half of `make seg-demo` (100 of its 200 iterations, the poly decay shortened along) on the default
    generated dataset already separates the shapes: mIoU 0.87 at iteration 100 of the full run."""
    cfg = compose_run("task=segmentation", "model=ravlt_t", "segmentor=fpn_demo", "dataset=shapes_ade",
                      f"dataset.root={tmp_path / 'shapes_ade'}", "hardware=cpu", "hardware.num_workers=0",
                      "logger=none", "task.max_iters=100", "task.val_interval=100", "task.vis_interval=0")  # fmt: skip
    assert segmentation.run(cfg)["mIoU"] > 0.6


@pytest.mark.slow
def test_two_process_ddp_on_the_cpu(compose_run, shapes_ade_root, tiny_spec):
    """hardware=cpu_ddp: the runner spawns two gloo processes; each must import the config's custom_imports
    (ravlt.mm.segmentation's hook, transform and metric) itself, as Config.fromfile did in the parent."""
    cfg = compose_run("task=segmentation", "model=ravlt_t", "segmentor=fpn_demo", *_shapes(shapes_ade_root, tiny_spec),
                      "hardware=cpu_ddp", "logger=none", "task.max_iters=2", "task.val_interval=2",
                      "task.batch_size=1")  # fmt: skip
    assert METRIC_KEYS <= segmentation.run(cfg).keys()


@pytest.mark.slow
def test_sigusr1_checkpoints_requeues_and_the_requeued_job_resumes_at_that_iteration(shapes_ade_root, tiny_spec,
                                                                                       tmp_path):  # fmt: skip
    """SLURM's time-limit warning during an mmengine run: ravlt.PreemptionHook saves iter_<k>.pth (atomically) after
    the iteration under way, points last_checkpoint at it, calls `scontrol requeue` (a stand-in on PATH records
    it) and stops; the requeued job resumes at iteration k with the optimizer state and finishes the schedule."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SLURM_JOB_ID": "77", "HYDRA_FULL_ERROR": "0"}  # fmt: skip
    run_dir, max_iters = tmp_path / "job", 12
    command = [sys.executable, "train.py", "task=segmentation", "model=ravlt_t", "segmentor=fpn_demo",
               *_shapes(shapes_ade_root, tiny_spec), "hardware=cpu", "hardware.num_workers=0", "logger=none",
               f"task.max_iters={max_iters}", f"task.val_interval={max_iters}", "task.batch_size=1",
               "task.vis_interval=0", "+task.cfg_options.default_hooks.checkpoint.interval=2",
               f"hydra.run.dir={run_dir}"]  # fmt: skip
    job = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600
    while not (run_dir / "iter_2.pth").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)
    output = job.communicate(timeout=600)[0]
    assert job.returncode == 128 + signal.SIGUSR1, output[-4000:]
    stop = next(line for line in output.splitlines() if line.startswith("stopped by SIGUSR1 at step "))
    iteration = int(stop.split("at step ")[1].split(":")[0])
    assert 2 <= iteration < max_iters
    checkpoint = run_dir / f"iter_{iteration}.pth"
    assert (run_dir / "last_checkpoint").read_text() == str(checkpoint) and calls.read_text() == "requeue 77\n"
    assert torch.load(checkpoint, weights_only=False)["meta"]["iter"] == iteration
    assert not (run_dir / "metrics.json").exists() and not list(run_dir.glob(".*.tmp-*"))

    resumed = subprocess.run(command, cwd=PROJECT_ROOT, env={**env, "SLURM_RESTART_COUNT": "1"}, text=True,
                             capture_output=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    assert f"resumed epoch: 0, iter: {iteration}" in resumed.stdout + resumed.stderr
    final = torch.load(run_dir / f"iter_{max_iters}.pth", weights_only=False)
    assert final["meta"]["iter"] == max_iters
    assert all(int(state["step"]) == max_iters for state in final["optimizer"]["state"].values())
    assert METRIC_KEYS <= json.loads((run_dir / "metrics.json").read_text()).keys()
