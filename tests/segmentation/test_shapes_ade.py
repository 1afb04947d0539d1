"""The generated shapes dataset: ADE20K file layout and label convention, fixed seed, regenerated only
when its specification changes."""
import numpy as np
import pytest
from PIL import Image

from ravlt.data import shapes_ade
from ravlt.data.shapes_ade import CLASSES, OTHER, ShapesADESpec, data_dir, generate_shapes_ade


def _files(root, kind, split):
    return sorted((data_dir(root) / kind / split).iterdir())


def test_ade20k_layout_and_labels(shapes_ade_root, tiny_spec):
    splits = (("training", "ADE_train_", tiny_spec.num_train), ("validation", "ADE_val_", tiny_spec.num_val))
    for split, prefix, count in splits:
        images, labels = _files(shapes_ade_root, "images", split), _files(shapes_ade_root, "annotations", split)
        assert [p.name for p in images] == [f"{prefix}{i:08d}.jpg" for i in range(1, count + 1)]
        assert [p.stem for p in labels] == [p.stem for p in images]
        for image, label in zip(images, labels):
            assert Image.open(image).size == (tiny_spec.image_size, tiny_spec.image_size)
            lbl = Image.open(label)
            assert lbl.mode == "L" and lbl.size == (tiny_spec.image_size, tiny_spec.image_size)
            assert set(np.unique(np.array(lbl))) <= set(range(len(CLASSES) + 1))  # 0 = other, 1..K classes
    labels = _files(shapes_ade_root, "annotations", "training")
    values = np.concatenate([np.array(Image.open(p)).ravel() for p in labels])
    assert OTHER in values and {1, 2, 3, 4} <= set(values)  # "other" scribbles and every class occur


def test_fixed_seed_gives_identical_files_and_reuses_a_complete_dataset(shapes_ade_root, tiny_spec, tmp_path):
    again = generate_shapes_ade(tmp_path / "again", tiny_spec)
    for kind, split in (("images", "training"), ("annotations", "validation")):
        first, second = _files(shapes_ade_root, kind, split), _files(again, kind, split)
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    stamp = _files(again, "images", "training")[0].stat().st_mtime_ns
    generate_shapes_ade(again, tiny_spec)
    assert _files(again, "images", "training")[0].stat().st_mtime_ns == stamp  # not rewritten


def test_a_changed_spec_regenerates(tiny_spec, tmp_path):
    root = generate_shapes_ade(tmp_path / "d", tiny_spec)
    smaller = ShapesADESpec(num_train=3, num_val=2, image_size=64, seed=1)
    generate_shapes_ade(root, smaller)
    assert len(_files(root, "images", "training")) == 3 and len(_files(root, "annotations", "validation")) == 2
    assert Image.open(_files(root, "images", "validation")[0]).size == (64, 64)


def test_a_copy_from_an_older_generator_is_redrawn(tiny_spec, tmp_path):
    root = generate_shapes_ade(tmp_path / "d", tiny_spec)
    done = data_dir(root) / "shapes_ade.json"
    done.write_text(done.read_text().replace('"generator_version": ', '"generator_version": -'))
    first = _files(root, "images", "training")[0]
    first.write_bytes(b"stale")
    generate_shapes_ade(root, tiny_spec)
    assert first.read_bytes() != b"stale"


def test_an_interrupted_generation_leaves_the_previous_copy_or_nothing(tiny_spec, tmp_path, monkeypatch):
    drawn, render = [], shapes_ade.render_sample

    def killed_after_three(rng, spec):
        if len(drawn) == 3:
            raise KeyboardInterrupt  # Ctrl-C, or a job killed while generating
        drawn.append(1)
        return render(rng, spec)

    monkeypatch.setattr(shapes_ade, "render_sample", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        generate_shapes_ade(tmp_path / "new", tiny_spec)
    assert not data_dir(tmp_path / "new").exists() and not list((tmp_path / "new").iterdir())

    monkeypatch.undo()
    root = generate_shapes_ade(tmp_path / "old", tiny_spec)
    before = [p.read_bytes() for p in _files(root, "images", "training")]
    monkeypatch.setattr(shapes_ade, "render_sample", killed_after_three)
    drawn.clear()
    with pytest.raises(KeyboardInterrupt):
        generate_shapes_ade(root, ShapesADESpec(num_train=3, num_val=2, image_size=64, seed=1))
    assert [p.read_bytes() for p in _files(root, "images", "training")] == before
    assert sorted(p.name for p in root.iterdir()) == ["ADEChallengeData2016"]
