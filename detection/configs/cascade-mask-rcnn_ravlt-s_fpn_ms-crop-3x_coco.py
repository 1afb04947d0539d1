# Cascade Mask R-CNN 3x (multi-scale + DETR-style crop) with RAVLT-S (paper: 54.2 / 46.8 COCO val box / mask AP).
_base_ = [
    './_base_/datasets/coco_instance_ms-crop.py',
    './_base_/models/cascade-mask-rcnn_ravlt_fpn.py',
    './_base_/schedules/adamw_3x.py',
    './_base_/ravlt_runtime.py',
]

# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_S.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_S.pth`.
pretrained = 'checkpoints/RAVLT_S.pth'
model = dict(
    backbone=dict(arch='ravlt_s', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
