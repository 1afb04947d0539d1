# Mask R-CNN with a RAVLT backbone (RAVLT-T widths; the variant configs change arch and FPN inputs).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ravlt.RAVLTBackbone',
        arch='ravlt_t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=None,  # the variant's rate (T 0.1, S 0.15, B 0.4, L 0.55)
        attn_types='llvv',
        frozen_stages=-1,
        norm_eval=False),  # BN statistics keep updating, as in the released runs (docs/method.md §6)
    neck=dict(in_channels=[64, 128, 256, 512]))
