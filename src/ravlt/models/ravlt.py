"""RAVLT: the Rank-Augmented Vision Linear Transformer (docs/method.md §5), with its timm registration.

Module and parameter names reproduce the released checkpoints' key layout (docs/method.md §7), so a released
state dict loads with ``strict=True`` and no renaming.

Speed (``tests/reference.py`` keeps the plain formulas; ``tests/perf`` holds the two to the same numbers):
the model runs channels-last inside (1×1 convolutions become oneDNN GEMMs, LayerNorm needs no
permute copies) and hands out ordinary contiguous NCHW tensors; the identity of ``x + DWConv(x)``
is folded into the depth-wise kernel; LayerScale is folded into the output projections when training (into
the residual's ``addcmul`` otherwise), DropPath and the residual add are one ``addcmul``; without autograd,
intermediates are updated in place; :meth:`RAVLT.fuse` prepares inference (BatchNorm folded, the 1×1
weights of small maps packed for oneDNN: :mod:`ravlt.models.packed`).

Training memory: attention and FFN each run as one autograd node of :mod:`ravlt.models.lean` that keeps
little and recomputes the cheap rest in backward (a block keeps 13.5 maps of its width, a softmax block on the
CPU 14.5; plain autograd 29.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import lean, packed
from .attention import ATTENTION_TYPES
from .lean import lean_node_runs, needs_grad
from .packed import PointwiseConv2d
from .rope import RoPE2d


@dataclass(frozen=True)
class RAVLTConfig:
    """One row of the variant table."""

    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    layer_scale_init: tuple[float, ...]
    drop_path_rate: float
    attn_types: tuple[str, ...] = ("l", "l", "v", "v")
    mlp_ratio: float = 3.5
    head_hidden_size: int = 1024


VARIANTS: dict[str, RAVLTConfig] = {
    "ravlt_t": RAVLTConfig((64, 128, 256, 512), (2, 2, 6, 2), (1, 2, 4, 8), (1, 1, 1, 1), 0.10),
    "ravlt_s": RAVLTConfig((64, 128, 320, 512), (3, 5, 9, 3), (1, 2, 5, 8), (1, 1, 1, 1), 0.15),
    "ravlt_b": RAVLTConfig((96, 192, 384, 512), (4, 6, 12, 6), (1, 2, 6, 8), (1, 1, 1e-6, 1e-6), 0.40),
    "ravlt_l": RAVLTConfig((96, 192, 448, 640), (4, 7, 19, 8), (1, 2, 7, 10), (1e-6,) * 4, 0.55),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) tensor; the inner ``norm`` matches the
    checkpoints' ``norm1.norm.*`` keys."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


# The functions wrapped with torch.fx.wrap decide at run time (in place or not, lean autograd node or
# not); FX symbolic tracing (timm's feature_cls='fx', torchvision's create_feature_extractor) records them
# as single calls instead of tracing into that logic.


def with_identity(weight: torch.Tensor) -> torch.Tensor:
    """The depth-wise kernel of ``x + conv(x)``: the identity joins the kernel's centre tap."""
    weight = weight.clone()
    weight[:, :, weight.shape[-2] // 2, weight.shape[-1] // 2] += 1.0
    return weight


@torch.fx.wrap
def depthwise_plus_identity(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x + conv(x)`` for a stride-1 'same' depth-wise conv, in one pass."""
    return lean.depthwise(x, with_identity(weight), bias)


def drop_scale(drop_path: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """DropPath's per-sample scale (0 or 1/keep) for a residual branch, drawn exactly as DropPath draws it
    for the branch itself; None when nothing is dropped."""
    if isinstance(drop_path, DropPath) and drop_path.training and drop_path.drop_prob > 0:
        return drop_path(x.new_ones((x.shape[0], 1, 1, 1)))
    return None


@torch.fx.wrap
def layer_scale(gamma: torch.Tensor, drop: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """LayerScale ``gamma`` and DropPath's per-sample ``drop`` as (γ to fold into the branch's output
    projection, scale of the residual add): folded where autograd records (exact, and nothing more to keep),
    else part of the residual's ``addcmul`` (no weight products per call)."""
    if needs_grad(gamma):
        return gamma, drop
    return None, gamma if drop is None else gamma * drop


@torch.fx.wrap
def add_residual(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``x + scale·y``; in place on ``x`` when autograd records neither (x is then a block's intermediate)."""
    if needs_grad(x, y):
        return x + y if scale is None else torch.addcmul(x, y, scale)
    return x.add_(y) if scale is None else x.addcmul_(y, scale)


@torch.fx.wrap
def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU through oneDNN's kernels on channels-last maps (:func:`ravlt.models.lean.gelu`): in place when
    autograd does not record ``x`` (a fresh intermediate), else as :class:`ravlt.models.lean.Gelu` in eager mode."""
    if not needs_grad(x):
        return lean.gelu(x, inplace=True)
    return F.gelu(x) if lean.compiling_or_tracing() else lean.Gelu.apply(x)  # the compiler fuses GELU itself


class GELU(nn.GELU):
    """:func:`gelu` as a module (the stem's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu(x)


@torch.fx.wrap
def conv_ffn(x, w1, b1, w_dw, b_dw, w2, b2, gamma):
    """:class:`ConvFFN`'s arithmetic: the lean autograd node where autograd records (see
    :func:`ravlt.models.lean.lean_node_runs`), in place without autograd."""
    w_dw = with_identity(w_dw)
    if gamma is not None:
        w2, b2 = w2 * gamma.view(-1, 1, 1, 1), b2 * gamma.view(-1)
    args = (x, w1, b1, w_dw, b_dw, w2, b2)
    grad = needs_grad(*args)
    if grad and lean_node_runs():
        return lean.ConvFFN.apply(*args)
    return lean.ConvFFN.infer(*args, grad=grad)


class ConvFFN(nn.Module):
    """1×1 conv (C→rC), GELU, h + DWConv3×3(h), 1×1 conv (rC→C)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = PointwiseConv2d(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.fc2 = PointwiseConv2d(hidden_dim, dim)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor | None = None) -> torch.Tensor:
        """The FFN's output, times the per-channel ``gamma`` (LayerScale, folded into fc2) if given."""
        fc1, dw, fc2 = self.fc1, self.dwconv, self.fc2
        return conv_ffn(x, fc1.weight, fc1.bias, dw.weight, dw.bias, fc2.weight, fc2.bias, gamma)


class RAVLTBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        attn_type: str,
        mlp_ratio: float,
        drop_path: float,
        layer_scale_init: float,
    ):
        super().__init__()
        if attn_type not in ATTENTION_TYPES:
            raise ValueError(f"attention type must be one of {sorted(ATTENTION_TYPES)}, got {attn_type!r}")
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = LayerNorm2d(dim)
        self.attn = ATTENTION_TYPES[attn_type](dim, num_heads)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = ConvFFN(dim, int(mlp_ratio * dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.gamma_1 = nn.Parameter(torch.full((1, dim, 1, 1), float(layer_scale_init)))
        self.gamma_2 = nn.Parameter(torch.full((1, dim, 1, 1), float(layer_scale_init)))

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        x = depthwise_plus_identity(x, self.pos.weight, self.pos.bias)
        fold, scale = layer_scale(self.gamma_1, drop_scale(self.drop_path, x))
        x = add_residual(x, self.attn(self.norm1(x), sin, cos, gamma=fold), scale)
        fold, scale = layer_scale(self.gamma_2, drop_scale(self.drop_path, x))
        return add_residual(x, self.ffn(self.norm2(x), gamma=fold), scale)


class Downsample(nn.Module):
    """Conv3×3 stride 2 + BatchNorm between stages."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class RAVLTStage(nn.Module):
    """Blocks of one resolution sharing one RoPE table, then the optional downsampling."""

    def __init__(
        self,
        dim: int,
        out_dim: int | None,
        depth: int,
        num_heads: int,
        attn_types: Sequence[str],
        mlp_ratio: float,
        drop_paths: Sequence[float],
        layer_scale_init: float,
    ):
        super().__init__()
        self.RoPE = RoPE2d(dim // num_heads)
        self.blocks = nn.ModuleList(
            RAVLTBlock(dim, num_heads, attn_types[j], mlp_ratio, drop_paths[j], layer_scale_init)
            for j in range(depth)
        )
        self.downsample = Downsample(dim, out_dim) if out_dim is not None else None
        self.grad_checkpointing = False

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        sin, cos = self.RoPE(x.shape[-2], x.shape[-1])
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, sin, cos, use_reentrant=False)
            else:
                x = blk(x, sin, cos)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_blocks(x)
        return self.downsample(x) if self.downsample is not None else x


def _stem(in_chans: int, dim: int) -> nn.Sequential:
    """Stride-4 conv stem; indices 0,1,3,4,6,7,9,10 hold the conv/BN pairs of the checkpoints."""
    half = dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, 3, stride=2, padding=1), nn.BatchNorm2d(half), GELU(),
        nn.Conv2d(half, half, 3, padding=1), nn.BatchNorm2d(half), GELU(),
        nn.Conv2d(half, half, 3, padding=1), nn.BatchNorm2d(half), GELU(),
        nn.Conv2d(half, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim),
    )  # fmt: skip


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.proj = _stem(in_chans, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def per_stage_attn_types(attn_types, depths) -> list[list[str]]:
    """Accept one letter per stage ('llvv') or an explicit per-block list per stage."""
    if isinstance(attn_types, str):
        attn_types = list(attn_types)
    if len(attn_types) != len(depths):
        raise ValueError(f"need attention types for {len(depths)} stages, got {attn_types!r}")
    stages = []
    for types, depth in zip(attn_types, depths):
        types = [types] * depth if isinstance(types, str) and len(types) == 1 else list(types)
        if len(types) != depth or any(t not in ATTENTION_TYPES for t in types):
            raise ValueError(f"stage attention types {types!r} must be {depth} of {sorted(ATTENTION_TYPES)}")
        stages.append(types)
    return stages


class RAVLT(nn.Module):
    """RAVLT backbone with the released classification head.

    Args:
        attn_types: per stage ``'l'`` (RALA) or ``'v'`` (softmax), e.g. ``'llvv'`` as released or
            ``'llll'`` for a pure linear model; a per-block list per stage is accepted too.
        num_classes: 0 keeps the pre-logits projection and makes ``head`` an identity.
        with_head: ``False`` drops ``proj``/``norm``/``head`` entirely (dense-prediction backbones).
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        layer_scale_init: Sequence[float] = (1, 1, 1, 1),
        drop_path_rate: float = 0.1,
        attn_types: str | Sequence = "llvv",
        mlp_ratio: float = 3.5,
        head_hidden_size: int = 1024,
        num_classes: int = 1000,
        in_chans: int = 3,
        with_head: bool = True,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        n = len(depths)
        self.num_classes = num_classes
        self.embed_dims = tuple(embed_dims)
        self.num_features = embed_dims[-1]
        self.head_hidden_size = head_hidden_size
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.attn_types = per_stage_attn_types(attn_types, depths)

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        self.feature_info = []
        for i in range(n):
            first = sum(depths[:i])
            self.layers.append(
                RAVLTStage(
                    embed_dims[i],
                    embed_dims[i + 1] if i < n - 1 else None,
                    depths[i],
                    num_heads[i],
                    self.attn_types[i],
                    mlp_ratio,
                    dpr[first : first + depths[i]],
                    layer_scale_init[i],
                )
            )
            # the stage's last block: its output is the feature map (the stage module's own output is downsampled)
            self.feature_info.append(
                dict(num_chs=embed_dims[i], reduction=4 * 2**i, module=f"layers.{i}.blocks.{depths[i] - 1}")
            )

        if with_head:
            self.proj = PointwiseConv2d(embed_dims[-1], head_hidden_size)
            self.norm = nn.BatchNorm2d(head_hidden_size)
            self.act = nn.SiLU()
            self.head = PointwiseConv2d(head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        self.with_head = with_head
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # --- timm model API -------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(("gamma_1", "gamma_2"))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)" if coarse else [(r"^layers\.(\d+)\.blocks\.(\d+)", None),
                                                     (r"^layers\.(\d+)\.downsample", (0,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if not self.with_head:
            raise RuntimeError("this RAVLT was built without a classification head")
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        device = self.proj.weight.device
        self.head = (
            PointwiseConv2d(self.head_hidden_size, num_classes, device=device) if num_classes > 0 else nn.Identity()
        )
        self.head.apply(self._init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for stage in self.layers:
            x = stage(x)
        return x.contiguous()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.norm(self.proj(x)))
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3), keepdim=True)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        if pre_logits:
            return x.flatten(1) if self.global_pool else x
        x = self.head(x)
        return x.flatten(1) if self.global_pool else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Each stage's output before its downsampling (strides 4/8/16/32)."""
        if output_fmt != "NCHW":
            raise ValueError("RAVLT only produces NCHW feature maps")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        intermediates = []
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        stages = self.layers if not stop_early else self.layers[: max_index + 1]
        for i, stage in enumerate(stages):
            x = stage.forward_blocks(x)
            if i in take_indices:
                intermediates.append(x.contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return x.contiguous(), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if max_index + 1 < len(self.feature_info):
            self.feature_info = self.feature_info[: max_index + 1]
        self.layers[-1].downsample = None
        if prune_head and self.with_head:
            del self.proj, self.norm, self.act, self.head
            self.with_head = False
        return take_indices

    @torch.no_grad()
    def fuse(self) -> "RAVLT":
        """Prepare for inference, in place: fold every BatchNorm (stem, downsampling, head) into the
        convolution before it, and let the 1×1 convolutions of small maps run on weights packed once for
        oneDNN on the CPU (:mod:`ravlt.models.packed`).

        For inference only: the BatchNorms become ``nn.Identity``, so the state dict no longer has the
        released layout and the model must not be trained afterwards. Load weights first, then fuse.
        Returns the model.
        """
        if self.training:
            raise RuntimeError("fuse() folds BatchNorm running statistics: call model.eval() first")
        pairs = [(self.patch_embed.proj, str(i), str(i + 1)) for i in (0, 3, 6, 9)]
        pairs += [(stage.downsample, "reduction", "norm") for stage in self.layers if stage.downsample is not None]
        if self.with_head:
            pairs.append((self, "proj", "norm"))
        for parent, conv_name, bn_name in pairs:
            bn = getattr(parent, bn_name)
            if isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(getattr(parent, conv_name), bn))
                setattr(parent, bn_name, nn.Identity())
        packed.pack(self)
        return self

    def load_pretrained(self, checkpoint_path: str, use_ema: bool = False) -> None:
        """timm's hook for ``pretrained_cfg['file']``: load a local checkpoint strictly."""
        from .checkpoint import load_checkpoint

        load_checkpoint(self, checkpoint_path, use_ema=use_ema, allow_new_head=True)


def checkpoint_filter_fn(state_dict: dict, model: RAVLT) -> dict:
    """Unwrap released / training checkpoints into this model's state-dict keys and check them."""
    from .checkpoint import checkpoint_weights, match_state_dict

    return match_state_dict(checkpoint_weights(state_dict), model, allow_new_head=True)


def _cfg(file: str, **kwargs) -> dict:
    return {
        "hf_hub_id": "aldjalkdf/RAVLT",
        "hf_hub_filename": file,
        "custom_load": True,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": "patch_embed.proj.0",
        "classifier": "head",
        "license": "unknown (authors' release)",
        "paper_ids": "arXiv:2411.07635",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {f"{name}.in1k": _cfg(f"RAVLT_{name[-1].upper()}.pth") for name in VARIANTS}
)


def variant_kwargs(name: str) -> dict:
    """Constructor arguments of a registered variant."""
    if name not in VARIANTS:
        raise ValueError(f"unknown RAVLT variant {name!r}; choose one of {sorted(VARIANTS)}")
    cfg = VARIANTS[name]
    return dict(
        embed_dims=cfg.embed_dims,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        layer_scale_init=cfg.layer_scale_init,
        drop_path_rate=cfg.drop_path_rate,
        attn_types=cfg.attn_types,
        mlp_ratio=cfg.mlp_ratio,
        head_hidden_size=cfg.head_hidden_size,
    )


def _create(name: str, pretrained: bool = False, **kwargs) -> RAVLT:
    model_kwargs = {**variant_kwargs(name), **kwargs}
    return build_model_with_cfg(
        RAVLT,
        name,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **model_kwargs,
    )


@register_model
def ravlt_t(pretrained: bool = False, **kwargs) -> RAVLT:
    return _create("ravlt_t", pretrained, **kwargs)


@register_model
def ravlt_s(pretrained: bool = False, **kwargs) -> RAVLT:
    return _create("ravlt_s", pretrained, **kwargs)


@register_model
def ravlt_b(pretrained: bool = False, **kwargs) -> RAVLT:
    return _create("ravlt_b", pretrained, **kwargs)


@register_model
def ravlt_l(pretrained: bool = False, **kwargs) -> RAVLT:
    return _create("ravlt_l", pretrained, **kwargs)
