# Spec §7 COCO recipe, 1x: AdamW lr 1e-4 for a total batch of 16 (2 images x 8 GPUs), weight decay
# 0.05 with none on norm layers, linear warm-up over 500 iterations, steps at epochs 8 and 11, fp16.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))

# mmdet's schedule_1x already has the 12 epochs, the 500-iteration linear warm-up (from 0.001 x lr)
# and the steps at epochs 8 and 11.

# lr is stated for batch 16; other total batch sizes scale it linearly.
auto_scale_lr = dict(enable=True, base_batch_size=16)
