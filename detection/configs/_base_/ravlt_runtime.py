# Runtime shared by the RAVLT detection configs: mmdet's default runtime plus our backbone's import,
# SyncBN under DDP, validation predictions (boxes + masks) drawn to every visualisation backend and,
# with a WandbVisBackend, logged as interactive W&B overlays.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['ravlt.mm'], allow_failed_imports=False)

# mmengine converts every BatchNorm (backbone stem / downsampling, heads) to SyncBatchNorm when
# training is distributed; single-process runs keep plain BatchNorm.
sync_bn = 'torch'

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1),
    # every 500th validation batch (1 image per GPU): 10 images per COCO val pass
    visualization=dict(type='DetVisualizationHook', draw=True, interval=500))
custom_hooks = [dict(type='ravlt.WandbDetectionImagesHook', interval=500)]
