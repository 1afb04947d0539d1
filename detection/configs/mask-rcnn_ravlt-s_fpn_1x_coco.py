# Mask R-CNN 1x with RAVLT-S (paper: 49.8 / 44.6 COCO val box / mask AP).
_base_ = './mask-rcnn_ravlt-t_fpn_1x_coco.py'

# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_S.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_S.pth`.
pretrained = 'checkpoints/RAVLT_S.pth'
model = dict(
    backbone=dict(arch='ravlt_s', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
