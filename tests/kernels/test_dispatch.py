"""impl= / FASTSTEAL_KERNELS selection, clear errors when Triton is forced where it cannot run, lazy import."""
import os
import subprocess
import sys

import pytest
import torch
from faststeal.kernels import _triton_env

from faststeal import kernels as K


def test_auto_uses_reference_on_cpu(monkeypatch):
    monkeypatch.delenv("FASTSTEAL_KERNELS", raising=False)
    assert K.resolve_impl("auto", torch.zeros(1)) == "torch"


def test_env_var_forces(monkeypatch):
    monkeypatch.setenv("FASTSTEAL_KERNELS", "torch")
    assert K.resolve_impl("auto", torch.zeros(1)) == "torch"
    monkeypatch.setenv("FASTSTEAL_KERNELS", "bogus")
    with pytest.raises(ValueError, match="FASTSTEAL_KERNELS"):
        K.resolve_impl("auto", torch.zeros(1))
    with pytest.raises(ValueError):
        K.resolve_impl("cuda", torch.zeros(1))


def test_env_var_triton_is_used(monkeypatch, device):
    pytest.importorskip("triton")
    monkeypatch.setenv("FASTSTEAL_KERNELS", "triton")
    assert K.resolve_impl("auto", torch.zeros(1, device=device)) == "triton"
    x = torch.randn(1, 2, 3, 3, device=device)
    w = torch.randn(3, 2, 3, 3, device=device)
    torch.testing.assert_close(K.eqlr_conv2d(x, w), K.eqlr_conv2d(x, w, impl="torch"), rtol=1e-4, atol=1e-5)


def test_forced_triton_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        K.eqlr_conv2d(torch.randn(1, 2, 3, 3), torch.randn(3, 2, 3, 3), impl="triton")


def test_forced_triton_not_installed_raises(monkeypatch):
    monkeypatch.setitem(_triton_env._state, "available", False)
    with pytest.raises(RuntimeError, match="not importable"):
        K.spectral_norm(torch.randn(3, 4), torch.randn(3), impl="triton")
    assert K.resolve_impl("auto", torch.zeros(1)) == "torch"


def _python(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTSTEAL_KERNELS")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)


def test_package_imports_and_runs_without_triton():
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, faststeal.kernels as K\n"
            "K.eqlr_conv2d(torch.randn(1, 2, 3, 3), torch.randn(3, 2, 3, 3))\n"
            "K.spectral_norm(torch.randn(3, 4), torch.randn(3))\n"
            "try:\n    K.eqlr_linear(torch.randn(1, 2), torch.randn(3, 2), impl='triton')\n"
            "except RuntimeError as e:\n    print('RAISED', e)\n")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert "RAISED" in res.stdout and "not importable" in res.stdout


def test_triton_not_imported_by_the_reference_path():
    pytest.importorskip("triton")
    code = ("import sys, torch, faststeal.kernels as K\n"
            "K.eqlr_conv2d(torch.randn(1, 2, 3, 3), torch.randn(3, 2, 3, 3))\n"
            "print('triton' in sys.modules)\n")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_interpreter_enabled_too_late_raises():
    pytest.importorskip("triton")
    code = ("import os, torch, faststeal.kernels.triton_conv, faststeal.kernels as K\n"
            "os.environ['TRITON_INTERPRET'] = '1'\n"
            "try:\n    K.eqlr_conv2d(torch.randn(1, 2, 3, 3), torch.randn(3, 2, 3, 3), impl='triton')\n"
            "except RuntimeError as e:\n    print('RAISED', e)\n")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert "RAISED" in res.stdout and "before" in res.stdout


def test_auto_on_a_gpu_takes_the_path_measured_faster_there(monkeypatch):
    # no GPU needed: "auto" reads only where the tensors live; a meta-device stand-in would not say is_cuda
    class Cuda:
        is_cuda = True

    from faststeal.kernels import dispatch

    monkeypatch.delenv("FASTSTEAL_KERNELS", raising=False)
    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    assert K.resolve_impl("auto", Cuda(), family="eqlr") == "torch"
    assert K.resolve_impl("auto", Cuda(), family="spectral_norm") == "triton"
    monkeypatch.setattr(dispatch, "AUTO_ON_CUDA", {"eqlr": "triton", "spectral_norm": "torch"})
    assert K.resolve_impl("auto", Cuda(), family="eqlr") == "triton"
