# UperNet 160k, RAVLT-B; paper: 52.5 mIoU ADE20K val.
_base_ = './upernet_ravlt-s_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/RAVLT_B.pth'
model = dict(
    backbone=dict(arch='ravlt_b', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 512]),
    auxiliary_head=dict(in_channels=384))
