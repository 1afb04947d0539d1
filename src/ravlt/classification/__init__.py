"""Image classification with Lightning: the RAVLT LightningModule, the class-folder DataModule, the
paper's DeiT-style recipe (timm transforms, Mixup / CutMix, AdamW, cosine, EMA) and its callbacks."""

from .callbacks import ModelSummaryWithFlops, UnreadableImageReport, ValidationImageGrid
from .checkpointing import AtomicCheckpointIO, RngStateCheckpoint
from .data import ImageFolderDataModule, SkippingImageFolder, Unreadable, collate_readable
from .loggers import finish_wandb
from .module import ImageClassifier
from .preemption import PreemptionCheckpoint

__all__ = [
    "AtomicCheckpointIO",
    "ImageClassifier",
    "ImageFolderDataModule",
    "ModelSummaryWithFlops",
    "PreemptionCheckpoint",
    "RngStateCheckpoint",
    "SkippingImageFolder",
    "Unreadable",
    "UnreadableImageReport",
    "ValidationImageGrid",
    "collate_readable",
    "finish_wandb",
]
