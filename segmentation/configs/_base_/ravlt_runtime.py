# Runtime shared by the RAVLT segmentation configs: mmseg's default runtime plus our modules, SyncBN
# under DDP, checkpoints kept by best mIoU, and validation pictures (image with its true and predicted
# masks side by side) sent to every visualisation backend (local files; W&B when configured).
_base_ = 'mmseg::_base_/default_runtime.py'

custom_imports = dict(imports=['ravlt.mm', 'ravlt.mm.segmentation'], allow_failed_imports=False)

# mmengine converts every BatchNorm (backbone stem / downsampling, heads) to SyncBatchNorm when
# training is distributed; single-process runs keep plain BatchNorm.
sync_bn = 'torch'
