# UperNet 160k, RAVLT-L; paper: 53.2 mIoU ADE20K val.
_base_ = './upernet_ravlt-s_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/RAVLT_L.pth'
model = dict(
    backbone=dict(arch='ravlt_l', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 448, 640]),
    auxiliary_head=dict(in_channels=448))
