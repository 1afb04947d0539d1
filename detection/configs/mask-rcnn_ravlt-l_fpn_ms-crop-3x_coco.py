# Mask R-CNN 3x (multi-scale + DETR-style crop) with RAVLT-L (paper: 53.6 / 47.3 COCO val box / mask AP).
_base_ = './mask-rcnn_ravlt-s_fpn_ms-crop-3x_coco.py'

# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_L.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_L.pth`.
pretrained = 'checkpoints/RAVLT_L.pth'
model = dict(
    backbone=dict(arch='ravlt_l', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 448, 640]))
