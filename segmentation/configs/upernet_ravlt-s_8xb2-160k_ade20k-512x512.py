# UperNet 160k (auxiliary FCN head on stage 3), RAVLT-S, ADE20K 512x512 crops, batch 16 (2 x 8 GPUs);
# paper: 50.7 mIoU. Whole-image test by default; sliding window (512x512, stride 341):
#   --cfg-options model.test_cfg.mode=slide model.test_cfg.crop_size="(512,512)" model.test_cfg.stride="(341,341)"
_base_ = [
    './_base_/models/upernet_ravlt.py',
    './_base_/datasets/ade20k.py',
    './_base_/ravlt_runtime.py',
    './_base_/schedules/adamw_poly_warmup_160k.py',
]

crop_size = (512, 512)
# Starts from the ImageNet-1k checkpoint (ours, or the released RAVLT_S.pth); point `pretrained`
# at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=/path/RAVLT_S.pth`.
pretrained = 'checkpoints/RAVLT_S.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='ravlt_s', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
