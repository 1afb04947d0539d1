# RetinaNet 1x with RAVLT-L (paper: 50.9 COCO val box AP).
_base_ = './retinanet_ravlt-t_fpn_1x_coco.py'

# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_L.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_L.pth`.
pretrained = 'checkpoints/RAVLT_L.pth'
model = dict(
    backbone=dict(arch='ravlt_l', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 448, 640]))
