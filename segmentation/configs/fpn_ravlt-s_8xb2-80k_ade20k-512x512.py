# Semantic FPN 80k, RAVLT-S; paper: 49.5 mIoU ADE20K val.
_base_ = './fpn_ravlt-t_8xb2-80k_ade20k-512x512.py'

pretrained = 'checkpoints/RAVLT_S.pth'
model = dict(
    backbone=dict(arch='ravlt_s', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
