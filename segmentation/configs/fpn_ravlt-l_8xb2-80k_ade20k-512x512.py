# Semantic FPN 80k, RAVLT-L; paper: 52.6 mIoU ADE20K val.
_base_ = './fpn_ravlt-t_8xb2-80k_ade20k-512x512.py'

pretrained = 'checkpoints/RAVLT_L.pth'
model = dict(
    backbone=dict(arch='ravlt_l', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 448, 640]))
