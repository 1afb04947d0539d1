"""W&B on the mmengine side: the hook turns a detection sample into an interactive wandb.Image (boxes per
class, mask, scores); the backend records the config without staging the working directory."""
import numpy as np
import torch
import wandb
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from PIL import Image

from ravlt.mm import WandbDetectionImagesHook

CLASSES = ("circle", "square", "triangle")


def test_sample_becomes_wandb_image_with_boxes_and_masks(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(path)
    sample = DetDataSample(metainfo=dict(img_path=str(path), scale_factor=(2.0, 2.0)))
    pred = InstanceData()
    pred.bboxes = torch.tensor([[1.0, 2.0, 30.0, 20.0], [5.0, 5.0, 20.0, 20.0]])
    pred.labels = torch.tensor([2, 0])
    pred.scores = torch.tensor([0.9, 0.1])  # the second is below score_thr
    pred.masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    pred.masks[0, 2:20, 1:30] = True
    sample.pred_instances = pred
    gt = InstanceData()
    gt.bboxes = torch.tensor([[2.0, 4.0, 60.0, 40.0]])  # network scale: twice the image
    gt.labels = torch.tensor([1])
    sample.gt_instances = gt

    image = WandbDetectionImagesHook(score_thr=0.3).to_wandb_image(wandb, sample, CLASSES)

    (pred_box,) = image._boxes["predictions"]._val
    assert pred_box["class_id"] == 2 and pred_box["box_caption"] == "triangle 0.90"
    assert pred_box["position"] == dict(minX=1.0, minY=2.0, maxX=30.0, maxY=20.0)
    (gt_box,) = image._boxes["ground_truth"]._val
    assert gt_box["position"] == dict(minX=1.0, minY=2.0, maxX=30.0, maxY=20.0)
    class_map = image._masks["predictions"]._val["mask_data"]
    assert class_map.shape == (40, 60) and set(np.unique(class_map)) == {0, 3}


def test_wandb_backend_records_the_config_without_staging_the_working_directory(tmp_path, monkeypatch):
    """mmengine's own backend copies every .py file below the working directory (a .venv included) into W&B's
    artifact staging folder on every run; ours records the config only."""
    from mmengine.config import Config

    from ravlt.mm import VISBACKENDS

    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "module.py").write_text("x = 1\n")
    backend = VISBACKENDS.build(dict(type="ravlt.WandbVisBackend", save_dir=str(tmp_path / "vis"),
                                     init_kwargs=dict(mode="offline", dir=str(tmp_path))))  # fmt: skip
    backend.add_config(Config(dict(model=dict(depth=3))))
    assert backend.experiment.config["model"] == {"depth": 3}
    backend.close()
    assert not [p for p in (tmp_path / "wandb-data").rglob("*") if p.is_file()]
