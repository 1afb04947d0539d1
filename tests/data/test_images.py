"""Input images of every mode become the RGB the models expect; unreadable ones are one clear error."""
import numpy as np
import pytest
from PIL import Image

from ravlt.data.images import UnreadableImageError, read_image


def test_16_bit_grey_levels_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode == "I;16"
    rgb = np.asarray(read_image(tmp_path / "depth.png"))
    assert rgb.shape == (48, 64, 3) and rgb.min() == 0 and rgb.max() == 255
    assert abs(rgb.mean() - 127.5) < 2  # PIL's own conversion gives a mean of 254: everything clipped to white


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "1", "F", "I"])
def test_every_mode_reads_as_rgb(tmp_path, mode):
    path = tmp_path / ("x.tif" if mode in ("F", "I") else "x.png" if mode != "CMYK" else "x.jpg")
    Image.new(mode, (7, 5)).save(path)
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (7, 5)


def test_missing_folder_and_undecodable_files_name_the_file(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="image not found: .*none.jpg"):
        read_image(tmp_path / "none.jpg")
    with pytest.raises(UnreadableImageError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(UnreadableImageError, match=r"cannot read image .*text.jpg \(UnidentifiedImageError"):
        read_image(tmp_path / "text.jpg")
