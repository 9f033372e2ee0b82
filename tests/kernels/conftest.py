"""Kernel tests run on CUDA when there is a GPU (full float32 on both sides) and in Triton's interpreter
on CPU otherwise (tests/conftest.py sets TRITON_INTERPRET=1 before Triton is imported)."""
import pytest
import torch


@pytest.fixture
def device(monkeypatch):
    if not torch.cuda.is_available():
        return torch.device("cpu")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    try:
        from faststeal.kernels import triton_conv
        monkeypatch.setattr(triton_conv, "DOT_PRECISION", "ieee")
    except ImportError:
        pass
    return torch.device("cuda")
