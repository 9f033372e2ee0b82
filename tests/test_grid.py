import pytest
import torch
from PIL import Image

from faststeal.grid import make_grid, save_grid


def test_grid_places_each_image_in_row_major_order():
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).repeat(1, 3, 4, 4) * 40
    grid = make_grid(images, nrow=3, pad=1, pad_value=255)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 40 and grid[6, 6, 0] == 160
    assert grid[6, 11, 0] == 255  # the empty sixth cell stays padding
    with pytest.raises(ValueError, match="uint8"):
        make_grid(images.float())


def test_save_grid_upscales_small_images(tmp_path):
    path = save_grid(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), tmp_path / "g.png")
    with Image.open(path) as im:
        assert im.size == ((2 * 10 + 2) * 2, (2 * 10 + 2) * 2) and im.mode == "L"
    assert not list(tmp_path.glob("*.tmp"))
