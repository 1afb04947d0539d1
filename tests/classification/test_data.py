"""Class-folder data: unreadable images are skipped and reported, samplers are reproducible and shard."""

import shutil

import pytest
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DistributedSampler

from ravlt.classification import ImageFolderDataModule, SkippingImageFolder, Unreadable, collate_readable
from ravlt.classification.transforms import eval_transform

AUGMENT = dict(scale=[0.5, 1.0], hflip=0.5, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel")


@pytest.fixture
def folder(tmp_path, make_image_folder, write_truncated_jpeg):
    root = make_image_folder(tmp_path / "colours")
    write_truncated_jpeg(root / "train" / "green" / "broken.jpg")
    return root


def datamodule(root, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(root, image_size=32, batch_size=4, augment=AUGMENT, crop_pct=1.0, **kwargs)


def test_truncated_jpeg_becomes_an_unreadable_record(folder):
    dataset = SkippingImageFolder(str(folder / "train"), eval_transform(32, "bicubic", 1.0))
    samples = [dataset[i] for i in range(len(dataset))]
    broken = [s for s in samples if isinstance(s, Unreadable)]
    assert len(broken) == 1 and broken[0].path.endswith("broken.jpg")
    assert "truncated" in broken[0].reason.lower()
    images = [s for s in samples if not isinstance(s, Unreadable)]
    assert len(images) == 12 and images[0][0].shape == (3, 32, 32)


def test_collate_leaves_unreadable_out_and_lists_them():
    image = torch.zeros(3, 8, 8)
    batch = collate_readable([(image, 1), Unreadable("a.jpg", "OSError: x"), (image + 1, 2)])
    assert batch["image"].shape == (2, 3, 8, 8) and batch["target"].tolist() == [1, 2]
    assert batch["unreadable"] == [("a.jpg", "OSError: x")]
    empty = collate_readable([Unreadable("a.jpg", "OSError: x")])
    assert len(empty["image"]) == 0 and len(empty["target"]) == 0


def test_a_whole_epoch_of_batches_carries_on_past_the_broken_file(folder):
    dm = datamodule(folder)
    dm.setup("fit")
    assert dm.classes == ["blue", "green", "red"] and dm.num_classes == 3
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 13 files, batches of 4, last partial one dropped
    seen = sum(len(b["image"]) for b in batches) + sum(len(b["unreadable"]) for b in batches)
    assert seen == 12
    for b in batches:
        assert b["image"].shape[1:] == (3, 32, 32) and len(b["image"]) == len(b["target"])
    val = list(dm.val_dataloader())
    assert sum(len(b["image"]) for b in val) == 12  # every val image, in order, no shuffling
    assert torch.cat([b["target"] for b in val]).tolist() == sorted(torch.cat([b["target"] for b in val]).tolist())


def test_training_order_depends_only_on_seed_and_epoch(folder):
    def order(seed, epoch):
        dm = datamodule(folder, seed=seed)
        dm.setup("fit")
        sampler = dm.train_sampler(1, 0)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)


def test_samplers_shard_and_repeat_under_ddp(folder):
    dm = datamodule(folder, repeated_aug=True)
    dm.setup("fit")
    assert isinstance(dm.train_sampler(1, 0), DistributedSampler)  # one process: no repeats
    ranks = [dm.train_sampler(2, r) for r in range(2)]
    assert all(isinstance(s, RepeatAugSampler) for s in ranks)
    assert sum(len(s) for s in ranks) <= 2 * len(dm.train_set)
    plain = datamodule(folder, repeated_aug=False)
    plain.setup("fit")
    shards = [set(plain.train_sampler(2, r)) for r in range(2)]
    assert not shards[0] & shards[1]


def test_val_classes_must_match_train(folder):
    shutil.rmtree(folder / "val" / "blue")
    dm = datamodule(folder)
    with pytest.raises(ValueError, match="same class folders"):
        dm.setup("fit")
