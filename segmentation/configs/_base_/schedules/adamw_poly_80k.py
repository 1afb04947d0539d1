# Spec §7 Semantic FPN recipe: AdamW lr 1e-4 for a total batch of 16, weight decay 1e-4, poly decay
# (power 0.9) to 1e-6 over 80k iterations, mixed precision; validation and checkpoints every 4k.
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=80000, by_epoch=False)]
train_cfg = dict(max_iters=80000, val_interval=4000)

# lr is stated for batch 16; other total batch sizes scale it linearly.
auto_scale_lr = dict(enable=True, base_batch_size=16)

default_hooks = dict(
    checkpoint=dict(interval=4000, max_keep_ckpts=1, save_best='mIoU'),
    # every 200th validation image with its true and predicted masks: 10 per ADE20K val pass
    visualization=dict(type='ravlt.SegVisualizationHook', draw=True, interval=200))
