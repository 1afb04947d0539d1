"""Class-folder image datasets (ImageNet, any ``image_folder``, the generated digits) for Lightning.

Layout: ``<root>/<train_split>/<class>/*.jpg`` and ``<root>/<val_split>/<class>/*.jpg``. An image that
cannot be decoded (truncated, corrupt, not an image) is skipped: the dataset hands back an
:class:`Unreadable` record, the collate function leaves it out of the batch and lists it under
``batch["unreadable"]``, and :class:`~ravlt.classification.callbacks.UnreadableImageReport` warns about it
and counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, DistributedSampler, default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from ravlt.data.images import DECODE_ERRORS, load_rgb
from ravlt.errors import ConfigError

from .transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Unreadable:
    """An image file that could not be decoded, in place of a sample."""

    path: str
    reason: str


class SkippingImageFolder(ImageFolder):
    """``ImageFolder`` that returns :class:`Unreadable` instead of raising on a file PIL cannot decode."""

    def __init__(self, root: str, transform=None):
        super().__init__(root, transform, loader=load_rgb)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            image = self.loader(path)  # decodes the whole file: truncation surfaces here
        except DECODE_ERRORS as e:
            return Unreadable(path, f"{type(e).__name__}: {e}")
        if self.transform is not None:
            image = self.transform(image)
        return image, target


@contextmanager
def dataset_errors(folder: Path) -> Iterator[None]:
    """torchvision's complaints about a split folder (no class folders, a class without images) as a
    :class:`ConfigError` that names the folder."""
    try:
        yield
    except FileNotFoundError as e:
        raise ConfigError(f"{folder}: {str(e).splitlines()[0]}; fix the folder or set dataset.root elsewhere") from None


def collate_readable(samples: list) -> dict:
    """Stack the readable samples; list the unreadable ones as ``(path, reason)``."""
    readable = [s for s in samples if not isinstance(s, Unreadable)]
    if readable:
        images, targets = default_collate(readable)
    else:
        images, targets = torch.empty(0), torch.empty(0, dtype=torch.long)
    unreadable = [(s.path, s.reason) for s in samples if isinstance(s, Unreadable)]
    return {"image": images, "target": targets, "unreadable": unreadable}


def batch_size_of(batch: Mapping) -> int:
    return len(batch["image"])


class ImageFolderDataModule(L.LightningDataModule):
    """Train / val class folders with timm transforms.

    Training shuffles with a sampler whose order depends only on ``seed`` and the epoch (so a resumed run
    sees the batches the uninterrupted one would), and with more than one process uses timm's
    repeated-augmentation sampler when ``repeated_aug`` (each image 3×, on different ranks). Validation
    is sharded across processes without shuffling.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        batch_size: int,
        num_workers: int = 0,
        train_split: str = "train",
        val_split: str = "val",
        interpolation: str = "bicubic",
        crop_pct: float = 0.875,
        augment: Mapping | None = None,
        repeated_aug: bool = False,
        seed: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__()
        self.root = Path(root)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_dir = self.root / train_split
        self.val_dir = self.root / val_split
        self.interpolation = interpolation
        self.crop_pct = crop_pct
        self.augment = dict(augment or {})
        self.repeated_aug = repeated_aug
        self.seed = seed
        self.pin_memory = pin_memory
        self.train_set: SkippingImageFolder | None = None
        self.val_set: SkippingImageFolder | None = None

    @property
    def classes(self) -> list[str]:
        """Class names: the train split's folders (the val split's when only that one exists)."""
        folder = self.train_dir if self.train_dir.is_dir() else self.val_dir
        with dataset_errors(folder):
            return find_classes(str(folder))[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            with dataset_errors(self.train_dir):
                self.train_set = SkippingImageFolder(
                    str(self.train_dir), train_transform(self.image_size, self.interpolation, self.augment)
                )
        if stage in ("fit", "validate") and self.val_set is None:
            with dataset_errors(self.val_dir):
                self.val_set = SkippingImageFolder(
                    str(self.val_dir), eval_transform(self.image_size, self.interpolation, self.crop_pct)
                )
            if self.val_set.classes != self.classes:
                raise ConfigError(
                    f"the class folders of {self.val_dir} ({len(self.val_set.classes)}) differ from those of "
                    f"{self.train_dir} ({len(self.classes)}); both splits need the same class folders"
                )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_sampler(self, world_size: int, rank: int):
        if self.repeated_aug and world_size > 1:
            return RepeatAugSampler(self.train_set, num_replicas=world_size, rank=rank, shuffle=True)
        return DistributedSampler(
            self.train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed, drop_last=True
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.train_sampler(*self._world()), drop_last=True)

    def val_dataloader(self) -> DataLoader:
        world_size, rank = self._world()
        sampler = DistributedSampler(self.val_set, num_replicas=world_size, rank=rank, shuffle=False)
        return self._loader(self.val_set, sampler, drop_last=False)

    def _loader(self, dataset, sampler, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_readable,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            # Fresh workers every epoch draw their seeds from the main process's RNG, which checkpoints
            # restore: a resumed run then augments exactly like the uninterrupted one.
            persistent_workers=False,
        )
