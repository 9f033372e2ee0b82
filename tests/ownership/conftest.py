"""Fixtures for the ownership tests (the tiny target lives in tests/conftest.py)."""
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
