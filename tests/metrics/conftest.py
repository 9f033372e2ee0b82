"""Shared fixtures for the FID tests: one extractor and one TorchScript reference per session."""
import numpy as np
import pytest
import torch

from faststeal.data import load_fashion_mnist
from faststeal.metrics import get_extractor
from faststeal.metrics.inception import load_reference


@pytest.fixture(scope="session")
def extractor():
    return get_extractor(device="cpu")


@pytest.fixture(scope="session")
def reference():
    return load_reference()


@pytest.fixture(scope="session")
def fmnist_test():
    """The first 64 Fashion-MNIST test images, uint8 (64, 28, 28)."""
    images, _ = load_fashion_mnist("test")
    return np.ascontiguousarray(images[:64])

    torch.manual_seed(0)
