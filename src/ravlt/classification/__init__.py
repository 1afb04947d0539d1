"""Image classification with Lightning: the RAVLT LightningModule, the class-folder DataModule, the
paper's DeiT-style recipe (timm transforms, Mixup / CutMix, AdamW, cosine, EMA) and its callbacks."""

from .callbacks import UnreadableImageReport, ValidationImageGrid
from .checkpointing import AtomicCheckpointIO, RngStateCheckpoint, checkpoint_weights
from .data import ImageFolderDataModule, SkippingImageFolder, Unreadable, collate_readable
from .loggers import build_loggers, finish_wandb
from .module import ImageClassifier

__all__ = [
    "AtomicCheckpointIO",
    "ImageClassifier",
    "ImageFolderDataModule",
    "RngStateCheckpoint",
    "SkippingImageFolder",
    "Unreadable",
    "UnreadableImageReport",
    "ValidationImageGrid",
    "build_loggers",
    "checkpoint_weights",
    "collate_readable",
    "finish_wandb",
]
