"""cmcore/export.py: images are written whole or not at all; a full disk is one line (issue 22)."""
import os

import numpy as np
import pytest
from PIL import Image

from cmcore.errors import SaveError
from cmcore.export import read_png_metadata, save_gif, save_png


def _half_then_full(self, fp, *args, **kwargs):
    with open(fp, "wb") as fh:
        fh.write(b"GIF89a half an image")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("write", ["png", "gif"])
def test_a_full_disk_leaves_no_file_and_says_so_in_one_line(tmp_path, monkeypatch, write):
    image = np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(Image.Image, "save", _half_then_full)
    with pytest.raises(SaveError, match=r"could not write .*out\.(png|gif) \(No space left on device\): free disk "
                                        "space or choose another folder") as caught:
        if write == "png":
            save_png(tmp_path / "out.png", image)
        else:
            save_gif(tmp_path / "out.gif", [image, image])
    assert isinstance(caught.value, OSError) and "\n" not in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_images_are_written_by_name_whatever_the_temporary_file_is_called(tmp_path):
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    save_png(tmp_path / "a" / "x.png", image, {"seed": "3"})
    save_gif(tmp_path / "x.gif", [image, 255 - image])
    with Image.open(tmp_path / "a" / "x.png") as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), image)
    assert read_png_metadata(tmp_path / "a" / "x.png")["seed"] == "3"
    with Image.open(tmp_path / "x.gif") as im:
        assert im.format == "GIF" and im.n_frames == 2
    assert sorted(os.listdir(tmp_path)) == ["a", "x.gif"]
