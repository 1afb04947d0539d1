# ADE20K (150 classes) as in mmseg, with labels outside 0..149 sent to the ignore index and counted
# (training: `ravlt.IgnoreInvalidLabels`; evaluation: `ravlt.CheckedIoUMetric`, which reports
# `invalid_label_pixels` next to aAcc / mIoU / mAcc) instead of crashing the loss.
_base_ = 'mmseg::_base_/datasets/ade20k.py'

num_classes = 150
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='ravlt.IgnoreInvalidLabels', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
# 2 images per GPU x 8 GPUs = the recipes' batch of 16
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader

val_evaluator = dict(type='ravlt.CheckedIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
