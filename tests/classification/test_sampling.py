"""Each training sample's augmentation comes from its own seed, and an epoch can start part way through:
what makes a mid-epoch checkpoint resume exactly (the runs themselves: test_train.py)."""
import random

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from ravlt.classification.data import SkippingImageFolder
from ravlt.classification.sampling import SeededPositions, seeded_randomness
from ravlt.classification.transforms import train_transform


def test_an_epoch_can_start_part_way_with_the_same_order_and_seeds():
    base = DistributedSampler(range(40), num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    sampler = SeededPositions(base, seed=3, rank=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    assert len(whole) == len(sampler) == 20 and len({seed for _, seed in whole}) == 20
    sampler.start_at(2, 8)
    assert list(sampler) == whole[8:]
    assert list(sampler) == whole  # only the first pass is shortened
    sampler.set_epoch(3)
    assert list(sampler) != whole
    other_rank = SeededPositions(DistributedSampler(range(40), 2, 0, True, 3, True), seed=3, rank=0)
    other_rank.set_epoch(2)
    assert not {seed for _, seed in other_rank} & {seed for _, seed in whole}


def test_a_sample_is_augmented_by_its_seed_alone_and_leaves_the_global_streams_alone(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "colours")
    augment = {"scale": [0.08, 1.0], "hflip": 0.5, "color_jitter": 0.4, "auto_augment": "rand-m9-mstd0.5-inc1",
               "re_prob": 0.25, "re_mode": "pixel", "re_count": 1}  # fmt: skip
    dataset = SkippingImageFolder(str(root / "train"), train_transform(32, "bicubic", augment))
    torch.manual_seed(0)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    first, _ = dataset[(1, 1234)]
    random.random(), np.random.rand(), torch.rand(3)  # the main process draws in between (DropPath, Mixup)
    again, _ = dataset[(1, 1234)]
    other, _ = dataset[(1, 1235)]
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.manual_seed(0)
    random.setstate(states[0])
    with seeded_randomness(99):
        random.random(), np.random.rand(), torch.rand(3)
    assert torch.equal(torch.get_rng_state(), states[2]) and random.getstate() == states[0]
