# Spec §7 UperNet recipe (as released): AdamW lr 6e-5 for a total batch of 16, weight decay 0.01 (none
# on norm layers), 1500 linear warm-up iterations, then poly decay (power 1.0) to 0 over 160k
# iterations, fp16 with a static loss scale of 512; validation and checkpoints every 8k.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'

max_iters = 160000
warmup_iters = 1500
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale=512.0,
    optimizer=dict(_delete_=True, type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=8000)

# lr is stated for batch 16; other total batch sizes scale it linearly.
auto_scale_lr = dict(enable=True, base_batch_size=16)

default_hooks = dict(
    checkpoint=dict(interval=8000, max_keep_ckpts=1, save_best='mIoU'),
    # every 200th validation image with its true and predicted masks: 10 per ADE20K val pass
    visualization=dict(type='ravlt.SegVisualizationHook', draw=True, interval=200))
