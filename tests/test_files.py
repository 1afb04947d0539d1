"""Files are written whole or not at all."""
import pytest

from ravlt.files import atomic_path, write_text_atomically


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_text_atomically(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp.name.startswith(".")
            tmp.write_text("half")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]
    write_text_atomically(target, "new")
    assert target.read_text() == "new" and len(list(target.parent.iterdir())) == 1
