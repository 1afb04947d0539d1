"""The offline digits dataset: layout, fixed stratified split, upscaled images, safe regeneration."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from ravlt.data.digits import CLASSES, NUM_IMAGES, ensure_digits, generate_digits, is_complete, split_indices


def test_layout_counts_and_images(digits_dir):
    assert is_complete(digits_dir)
    for split, n in NUM_IMAGES.items():
        files = sorted((digits_dir / split).glob("*/*.png"))
        assert len(files) == n
        assert sorted(p.name for p in (digits_dir / split).iterdir()) == list(CLASSES)
    image = Image.open(next((digits_dir / "train" / "7").glob("*.png")))
    assert image.size == (32, 32) and image.mode == "L"


def test_split_is_fixed_stratified_and_disjoint(digits_dir):
    targets = load_digits().target
    split = split_indices(targets)
    again = split_indices(targets)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not set(split["train"]) & set(split["val"])
    assert len(split["train"]) + len(split["val"]) == len(targets)
    val_counts = Counter(targets[split["val"]])
    assert set(val_counts) == set(range(10)) and min(val_counts.values()) >= 35
    # the files on disk are exactly that split, each in its digit's folder
    on_disk = {int(p.stem): int(p.parent.name) for p in (digits_dir / "val").glob("*/*.png")}
    assert sorted(on_disk) == split["val"].tolist()
    assert all(targets[i] == label for i, label in on_disk.items())


def test_pixels_are_the_upscaled_digit(digits_dir):
    digits = load_digits()
    index = int(next((digits_dir / "train" / "3").glob("*.png")).stem)
    pixels = np.asarray(Image.open(digits_dir / "train" / "3" / f"{index:04d}.png"), dtype=np.float32)
    down = pixels.reshape(8, 4, 8, 4).mean(axis=(1, 3)) * 16 / 255
    assert np.abs(down - digits.images[index]).mean() < 1.5  # bicubic upscaling keeps the 8x8 content


def test_ensure_is_idempotent_and_never_overwrites(digits_dir, tmp_path):
    stamp = (digits_dir / "train").stat().st_mtime_ns
    assert ensure_digits(digits_dir) == digits_dir
    assert (digits_dir / "train").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="remove it to regenerate"):
        generate_digits(digits_dir)
    (tmp_path / "digits").mkdir()  # an empty leftover folder is replaced
    assert is_complete(ensure_digits(tmp_path / "digits", image_size=16))
    assert Image.open(next((tmp_path / "digits" / "val" / "0").glob("*.png"))).size == (16, 16)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
