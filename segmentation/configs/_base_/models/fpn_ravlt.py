# Semantic FPN (FPN 256 channels, head 128 channels, dropout 0.1) on a RAVLT backbone; RAVLT-T widths,
# the variant configs change `arch` and the FPN inputs.
_base_ = 'mmseg::_base_/models/fpn_r50.py'

norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN under DDP (`sync_bn` in ravlt_runtime.py)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ravlt.RAVLTBackbone',
        arch='ravlt_t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=None,  # the variant's rate (T 0.1, S 0.15, B 0.4, L 0.55)
        attn_types='llvv',
        frozen_stages=-1,
        norm_eval=False),  # BN statistics keep updating, as in the released runs (docs/method.md §6)
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256, num_outs=4),
    decode_head=dict(channels=128, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
