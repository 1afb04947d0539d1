# RetinaNet 1x with RAVLT-T (paper: 45.9 COCO val box AP).
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/models/retinanet_ravlt_fpn.py',
    './_base_/schedules/adamw_1x.py',
    './_base_/ravlt_runtime.py',
]

# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_T.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_T.pth`.
pretrained = 'checkpoints/RAVLT_T.pth'
model = dict(
    backbone=dict(arch='ravlt_t', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# RetinaNet as released: weight decay 1e-4 instead of 0.05
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
