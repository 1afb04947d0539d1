# UperNet (pyramid pooling + FPN fusion, 512 channels) with the auxiliary FCN head on stage 3 (loss
# weight 0.4) on a RAVLT backbone; RAVLT-S widths, the variant configs change `arch` and head inputs.
_base_ = 'mmseg::_base_/models/upernet_swin.py'

norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN under DDP (`sync_bn` in ravlt_runtime.py)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ravlt.RAVLTBackbone',
        arch='ravlt_s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=None,  # the variant's rate (S 0.15, B 0.4, L 0.55)
        attn_types='llvv',
        frozen_stages=-1,
        norm_eval=False),  # BN statistics keep updating, as in the released runs (docs/method.md §6)
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
