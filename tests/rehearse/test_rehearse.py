"""`python -m ravlt.rehearse`: the paper's 25 runs, what the rehearsal changes in each (only what the CPU
forces, in the Hydra config and in the mmengine config that runs), its checks, and its bad input."""
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ravlt.commands import run_command
from ravlt.rehearse import cli
from ravlt.rehearse.configs import changed_keys, compose_config, flatten
from ravlt.rehearse.evidence import Phase, RehearsalError
from ravlt.rehearse.inputs import Inputs, prepare
from ravlt.rehearse.row import check_resumed, check_trained
from ravlt.rehearse.runs import PAPER_RUNS, select

CPU_PRESET = {"hardware.accelerator", "hardware.devices", "hardware.keep_freed_memory", "hardware.name",
              "hardware.num_workers", "hardware.pin_memory", "hardware.precision", "hardware.strategy",
              "hardware.sync_batchnorm"}  # fmt: skip
FROM_HARDWARE = {"task.trainer.accelerator", "task.trainer.devices", "task.trainer.precision", "task.trainer.strategy",
                 "task.trainer.sync_batchnorm", "task.datamodule.num_workers",
                 "task.datamodule.pin_memory"}  # fmt: skip
BATCH = {"task.batch_size", "task.datamodule.batch_size"}
LENGTH = {"task.max_epochs", "task.trainer.max_epochs", "task.max_iters", "task.trainer.limit_train_batches",
          "task.trainer.limit_val_batches", "task.cfg_options.train_cfg.val_begin"}  # fmt: skip
STEP_TIMER = {"task.callbacks.step_times._target_", "task.callbacks.step_times.path"}
SCORE_THRESHOLD = {"task.cfg_options.model.test_cfg.score_thr", "task.cfg_options.model.test_cfg.rcnn.score_thr"}
ALLOWED = CPU_PRESET | FROM_HARDWARE | BATCH | LENGTH | STEP_TIMER | SCORE_THRESHOLD


def test_the_paper_runs_are_all_there():
    names = [run.name for run in PAPER_RUNS]
    expected = [f"in1k-{s}" for s in "tsbl"] + [f"retinanet-1x-{s}" for s in "tsbl"]
    expected += [f"mask-rcnn-1x-{s}" for s in "tsbl"] + [f"mask-rcnn-3x-{s}" for s in "sbl"]
    expected += [f"cascade-mask-rcnn-3x-{s}" for s in "sbl"] + [f"fpn-80k-{s}" for s in "tsbl"]
    expected += [f"upernet-160k-{s}" for s in "sbl"]
    assert names == expected and len(names) == 25
    assert [r.name for r in select(["upernet-*", "in1k-t"])] == [
        "in1k-t", "upernet-160k-s", "upernet-160k-b", "upernet-160k-l"
    ]


@pytest.mark.parametrize("run", PAPER_RUNS, ids=lambda r: r.name)
def test_the_rehearsal_changes_only_what_the_cpu_forces(run, tmp_path):
    where = (str(tmp_path / "data"), str(tmp_path / "RAVLT.pth"), str(tmp_path / "out"))
    shipped = compose_config(run.shipped(*where))
    changes = changed_keys(shipped, compose_config(run.rehearsal(*where)))
    assert set(changes) <= ALLOWED, sorted(set(changes) - ALLOWED)
    assert changes["hardware.precision"] == ["bf16-mixed", "32-true"]  # AMP off
    assert shipped.hardware.name == "gpus"  # what the README and the experiments launch
    resumed = changed_keys(compose_config(run.rehearsal(*where)), compose_config(run.rehearsal(*where, "last.ckpt")))
    assert set(resumed) <= LENGTH | {"ckpt_path"} and resumed["ckpt_path"] == [None, "last.ckpt"]


@pytest.fixture(scope="session")
def dense_inputs(tmp_path_factory) -> Inputs:
    """The generated COCO and ADE20K data and the RAVLT-T / RAVLT-S checkpoints."""
    runs = select(["retinanet-1x-t", "cascade-mask-rcnn-3x-s", "fpn-80k-t"])
    return prepare(tmp_path_factory.mktemp("inputs"), runs)


# what the mm config of a rehearsal may differ in from the shipped command's, and nothing else
MM_ALLOWED = (
    "train_dataloader.batch_size", "train_dataloader.num_workers", "train_dataloader.persistent_workers",
    "val_dataloader.num_workers", "val_dataloader.persistent_workers",
    "test_dataloader.num_workers", "test_dataloader.persistent_workers",
    "train_cfg.max_epochs", "train_cfg.max_iters", "train_cfg.val_begin",
    "param_scheduler.",  # begin / end / milestones follow the training length
    "model.test_cfg.score_thr", "model.test_cfg.rcnn.score_thr",
    "optim_wrapper.type", "optim_wrapper.dtype", "optim_wrapper.loss_scale",  # AMP needs CUDA
    "sync_bn", "launcher", "env_cfg.dist_cfg.backend", "model_wrapper_cfg.",  # one process, no SyncBN
)  # fmt: skip


@pytest.mark.parametrize("name", ["retinanet-1x-t", "cascade-mask-rcnn-3x-s", "fpn-80k-t"])
def test_the_mm_config_that_runs_is_the_shipped_recipe(name, dense_inputs, tmp_path):
    from ravlt.mm.loading import unwrapped
    from ravlt.tasks import detection, segmentation

    run = select([name])[0]
    task = detection if run.task == "detection" else segmentation
    where = (str(dense_inputs.dataset_root(run.task)), str(dense_inputs.pretrained(run.size)), str(tmp_path))
    shipped, rehearsal = (task.build_config(compose_config(o)) for o in (run.shipped(*where), run.rehearsal(*where)))
    before, after = flatten(shipped.to_dict()), flatten(rehearsal.to_dict())
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    norm_types = {k for k in changed if k.endswith("norm_cfg.type") and before.get(k) == "SyncBN"}  # no SyncBN on a CPU
    assert {k for k in changed - norm_types if not k.startswith(MM_ALLOWED)} == set()
    assert after["train_dataloader.batch_size"] == (1 if run.task == "detection" else 2)
    pipeline = [step["type"] for step in unwrapped(rehearsal.train_dataloader.dataset.pipeline)]
    assert pipeline == [step["type"] for step in Config.fromfile(rehearsal.filename).train_dataloader.dataset.pipeline]
    assert rehearsal.model.backbone.init_cfg.checkpoint == str(dense_inputs.pretrained(run.size))


def _phase(steps, iterations, stem, metrics=None):
    return Phase(Path("."), Path("ckpt.pth"), steps, iterations, 1, True, stem, metrics or {})


def test_the_checks_catch_a_run_that_did_not_do_its_part(dense_inputs):
    run = select(["fpn-80k-t"])[0]
    from ravlt.models.checkpoint import checkpoint_weights

    released = checkpoint_weights(dense_inputs.pretrained("t"))["patch_embed.proj.0.weight"]
    n = run.steps
    trained = _phase(n, [(0, 1.0)], released + 1e-6)
    check_trained(run, trained, dense_inputs)
    with pytest.raises(RehearsalError, match="was not loaded"):
        check_trained(run, _phase(n, [(0, 1.0)], torch.randn_like(released) * 0.02), dense_inputs)
    with pytest.raises(RehearsalError, match="optimizer steps"):
        check_trained(run, _phase(0, [], released), dense_inputs)

    metrics = {"mIoU": 0.0, "mAcc": 0.01, "aAcc": 0.2}
    check_resumed(run, trained, _phase(2 * n, [(n, 1.0)], released, metrics))
    with pytest.raises(RehearsalError, match="started at step 0"):  # trained from the start again
        check_resumed(run, trained, _phase(2 * n, [(0, 1.0), (1, 1.0)], released, metrics))
    with pytest.raises(RehearsalError, match="no mIoU"):
        check_resumed(run, trained, _phase(2 * n, [(n, 1.0)], released, {"aAcc": 1.0}))
    with pytest.raises(RehearsalError, match="non-finite"):
        check_resumed(run, trained, _phase(2 * n, [(n, 1.0)], released, {**metrics, "mIoU": math.nan}))


def test_generated_inputs_have_the_real_layouts_and_sizes(dense_inputs):
    import json

    from PIL import Image

    coco = dense_inputs.dataset_root("detection")
    val = json.loads((coco / "annotations" / "instances_val2017.json").read_text())
    assert len(val["categories"]) == 80 and val["categories"][0]["name"] == "person"
    image = val["images"][0]
    assert (image["width"], image["height"]) == (640, 480) == Image.open(coco / "val2017" / image["file_name"]).size
    for ann in val["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and x + w <= 640 and 0 <= y and y + h <= 480 and len(ann["segmentation"][0]) >= 6
    ade = dense_inputs.dataset_root("segmentation") / "ADEChallengeData2016"
    labels = sorted((ade / "annotations" / "training").glob("*.png"))
    assert (
        Image.open(labels[0]).size == (683, 512) == Image.open(next((ade / "images" / "training").glob("*.jpg"))).size
    )
    import numpy as np

    values = set(np.unique(np.concatenate([np.array(Image.open(p)).ravel() for p in labels])))
    assert max(values) <= 150 and len(values) > 4  # ADE20K's 150 classes, not the demo's 4


@pytest.mark.parametrize("args, message", [
    (["--runs", "in1k-x"], "error: --runs in1k-x matches none of the paper runs"),
    (["--timeout", "0"], "error: argument --timeout: must be > 0"),
])  # fmt: skip
def test_bad_arguments_are_one_line_errors(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        run_command(lambda: cli.main([*args, "--out", str(tmp_path)]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not (tmp_path / "report.json").exists()
