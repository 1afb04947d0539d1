"""RAVLT as a dense-prediction backbone for mmdet and mmseg (docs/method.md §6).

It is :class:`ravlt.models.RAVLT` without the classification head plus one channel LayerNorm per
output stage, so its state-dict keys are exactly the released detection / segmentation layout
(``patch_embed.*``, ``layers.*``, ``extra_norms.{i}.norm.*``; ``backbone.`` prefixed in a detector).
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ravlt.models import RAVLT, load_checkpoint, variant_kwargs
from ravlt.models.ravlt import LayerNorm2d

from .registry import MODELS


@MODELS.register_module()
class RAVLTBackbone(RAVLT, BaseModule):
    """Multi-scale RAVLT features: stage outputs before downsampling, strides 4/8/16/32.

    Args:
        arch: variant name, ``ravlt_t`` / ``ravlt_s`` / ``ravlt_b`` / ``ravlt_l``.
        out_indices: stages to return (0..3); each gets its own LayerNorm ``extra_norms.{i}``.
        drop_path_rate: stochastic depth; ``None`` keeps the variant's rate.
        attn_types: per stage ``'l'`` (RALA) or ``'v'`` (softmax); ``'llvv'`` as released.
        frozen_stages: ``-1`` trains everything; ``0`` freezes the stem; ``k >= 1`` also freezes
            stages ``0..k-1`` with their downsampling (weights fixed, BatchNorm in eval mode).
        norm_eval: put every BatchNorm (``_BatchNorm``, so SyncBatchNorm too) in eval mode while
            training, freezing its running statistics. ``False`` by default: the released runs meant
            to freeze but their check missed SyncBatchNorm, so statistics kept updating (docs/method.md §6) and
            the published numbers come from that behaviour.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads a classification checkpoint
            (ours, or a released ``RAVLT_*.pth``; ``use_ema=True`` takes its EMA weights) or a
            detection / segmentation one (``backbone.`` keys), strictly: a checkpoint of another
            variant raises :class:`ravlt.models.CheckpointMismatchError`. From a classification
            checkpoint the ``extra_norms`` start fresh.

    SyncBatchNorm: the stem and downsampling BatchNorms are plain ``BatchNorm2d`` here; mmengine's
    Runner converts them (and the heads') to SyncBatchNorm under DDP when the config sets
    ``sync_bn = 'torch'``, as ours do.
    """

    def __init__(
        self,
        arch: str = "ravlt_t",
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float | None = None,
        attn_types: str | Sequence = "llvv",
        frozen_stages: int = -1,
        norm_eval: bool = False,
        init_cfg: dict | None = None,
    ):
        kwargs = variant_kwargs(arch)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        kwargs["attn_types"] = attn_types
        super().__init__(with_head=False, **kwargs)
        self.init_cfg = init_cfg
        self.arch = arch
        num_stages = len(self.layers)
        self.out_indices = tuple(sorted(out_indices))
        if not self.out_indices or any(not 0 <= i < num_stages for i in self.out_indices):
            raise ValueError(f"out_indices must be stage indices in 0..{num_stages - 1}, got {out_indices!r}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be in -1..{num_stages}, got {frozen_stages}")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.extra_norms = nn.ModuleDict({str(i): LayerNorm2d(self.embed_dims[i]) for i in self.out_indices})
        self.extra_norms.apply(self._init_weights)
        self._freeze_stages()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.patch_embed, *self.layers[: self.frozen_stages]]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> "RAVLTBackbone":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            loaded = load_checkpoint(self, cfg["checkpoint"], use_ema=cfg.get("use_ema", False))
            fresh = sorted({k.rsplit(".", 2)[0] for k in self.state_dict() if k not in loaded})
            print_log(
                f"{self.arch}: loaded {len(loaded)} tensors from {cfg['checkpoint']}"
                + (f"; freshly initialised: {', '.join(fresh)}" if fresh else ""),
                logger="current",
            )
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.forward_intermediates(x, indices=list(self.out_indices), stop_early=True, intermediates_only=True)
        # NCHW-contiguous out: the backbone runs channels-last, but mmcv's RoIAlign (CPU and CUDA) indexes
        # its input as contiguous NCHW and silently reads garbage from a channels-last tensor.
        return tuple(self.extra_norms[str(i)](f).contiguous() for i, f in zip(self.out_indices, feats))
