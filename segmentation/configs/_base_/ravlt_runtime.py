# Runtime shared by the RAVLT segmentation configs: mmseg's default runtime plus our modules and SyncBN
# under DDP. (mmseg keeps `default_hooks` in its schedules, so ours set checkpointing by best mIoU and
# the validation pictures there.)
_base_ = 'mmseg::_base_/default_runtime.py'

custom_imports = dict(imports=['ravlt.mm', 'ravlt.mm.segmentation'], allow_failed_imports=False)

# mmengine converts every BatchNorm (backbone stem / downsampling, heads) to SyncBatchNorm when
# training is distributed; single-process runs keep plain BatchNorm.
sync_bn = 'torch'
