# Mask R-CNN 1x with RAVLT-B (paper: 51.2 / 45.7 COCO val box / mask AP).
_base_ = './mask-rcnn_ravlt-t_fpn_1x_coco.py'

# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_B.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_B.pth`.
pretrained = 'checkpoints/RAVLT_B.pth'
model = dict(
    backbone=dict(arch='ravlt_b', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 512]))
