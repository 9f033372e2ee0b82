"""Fixtures for the defense tests (the tiny target and the private cache live in tests/conftest.py)."""
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, previous))
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def images():
    """12 random uint8 images, grey and colour, including the extreme values 0 and 255."""
    g = torch.Generator().manual_seed(1)
    grey = torch.randint(0, 256, (6, 1, 16, 16), generator=g, dtype=torch.uint8)
    grey[0] = 0
    grey[1] = 255
    colour = torch.randint(0, 256, (6, 3, 16, 16), generator=g, dtype=torch.uint8)
    return {"grey": grey, "colour": colour}
