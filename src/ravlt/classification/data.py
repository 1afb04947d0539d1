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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, DistributedSampler, default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from ravlt.data.images import DECODE_ERRORS, load_rgb
from ravlt.errors import ConfigError

from .sampling import SeededPositions, seeded_randomness
from .transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Unreadable:
    """An image file that could not be decoded, in place of a sample."""

    path: str
    reason: str


class SkippingImageFolder(ImageFolder):
    """``ImageFolder`` that returns :class:`Unreadable` instead of raising on a file PIL cannot decode.

    Indexed by ``(index, seed)`` (from :class:`~ravlt.classification.sampling.SeededPositions`), the
    sample's augmentation draws from ``seed`` alone.
    """

    def __init__(self, root: str, transform=None):
        super().__init__(root, transform, loader=load_rgb)

    def __getitem__(self, key: int | tuple[int, int]):
        index, seed = key if isinstance(key, tuple) else (key, None)
        path, target = self.samples[index]
        try:
            image = self.loader(path)  # decodes the whole file: truncation surfaces here
        except DECODE_ERRORS as e:
            return Unreadable(path, f"{type(e).__name__}: {e}")
        if self.transform is not None:
            with seeded_randomness(seed) if seed is not None else nullcontext():
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


def require_readable(dataset: ImageFolder, folder: Path, probes: int = 8) -> None:
    """At least one of ``probes`` images spread over the split decodes: a folder of placeholders (a partial
    download, git-lfs pointers, another format) stops here instead of training on nothing. Single
    unreadable images are skipped later, one by one."""
    paths = [path for path, _ in dataset.samples[:: max(1, len(dataset.samples) // probes)][:probes]]
    reasons = []
    for path in paths:
        try:
            load_rgb(path)
            return
        except DECODE_ERRORS as e:
            reasons.append(f"{Path(path).name}: {type(e).__name__}")
    raise ConfigError(
        f"none of {len(paths)} images sampled across {folder} could be read ({'; '.join(reasons[:3])}): "
        "placeholders of a partial download, git-lfs pointers, another format? Fix the files or set dataset.root"
    )


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
    """The samples the loader read for a batch, unreadable ones included (never 0: the throughput monitor
    refuses a batch of no samples)."""
    return len(batch["image"]) + len(batch["unreadable"])


class ImageFolderDataModule(L.LightningDataModule):
    """Train / val class folders with timm transforms.

    Training shuffles with a sampler whose order depends only on ``seed`` and the epoch, and with more than
    one process uses timm's repeated-augmentation sampler when ``repeated_aug`` (each image 3×, on
    different ranks). Each sample's augmentation has its own seed (:mod:`ravlt.classification.sampling`)
    and every checkpoint records where the epoch stands, so a run resumed even mid-epoch sees the batches,
    augmented alike, that the uninterrupted one would. Validation is sharded across processes without
    shuffling.
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
        self._resume_at = (0, 0)  # (epoch, sample position) the next training pass starts at

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
            require_readable(self.train_set, self.train_dir)
        if stage in ("fit", "validate") and self.val_set is None:
            with dataset_errors(self.val_dir):
                self.val_set = SkippingImageFolder(
                    str(self.val_dir), eval_transform(self.image_size, self.interpolation, self.crop_pct)
                )
            require_readable(self.val_set, self.val_dir)
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
        world_size, rank = self._world()
        sampler = SeededPositions(self.train_sampler(world_size, rank), self.seed, rank)
        sampler.start_at(*self._resume_at)
        self._resume_at = (0, 0)
        return DataLoader(
            self.train_set,
            sampler=sampler,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds: none from the global stream
            drop_last=True,
            **self._loader_args(),
        )

    # Where the training data stands, in every checkpoint. (Lightning's own way, a loader's state_dict,
    # comes back only after the Trainer built the loader, to count the steps of the schedule.)
    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        taken = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        if taken >= trainer.num_training_batches:  # the epoch is over: the next one starts from its beginning
            return {"epoch": trainer.current_epoch + 1, "position": 0}
        return {"epoch": trainer.current_epoch, "position": taken * self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._resume_at = (state["epoch"], state["position"])

    def val_dataloader(self) -> DataLoader:
        world_size, rank = self._world()
        sampler = DistributedSampler(self.val_set, num_replicas=world_size, rank=rank, shuffle=False)
        return DataLoader(self.val_set, sampler=sampler, drop_last=False, **self._loader_args())

    def _loader_args(self) -> dict:
        return dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_readable,
            pin_memory=self.pin_memory,
        )
