# RetinaNet with a RAVLT backbone (RAVLT-T widths). As released, all four stages are taken (so the
# released checkpoints' extra_norms.0 exists) and the FPN starts from stage 2 (start_level=1).
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ravlt.RAVLTBackbone',
        arch='ravlt_t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=None,
        attn_types='llvv',
        frozen_stages=-1,
        norm_eval=False),
    neck=dict(in_channels=[64, 128, 256, 512], start_level=1, add_extra_convs='on_input', num_outs=5))

# extra_norms.0 feeds nothing (start_level=1): let DDP skip its gradient
find_unused_parameters = True
