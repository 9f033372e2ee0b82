"""A DCGAN-tutorial generator exported to every format a target can come in (built once per session)."""
import sys
import warnings
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from dcgan import NZ, make_dcgan  # noqa: E402


def export_all(folder: Path, model=None) -> dict:
    """{kind: spec} for one generator saved as TorchScript, torch.export (.pt2) and ONNX, plus its py: spec."""
    model = model or make_dcgan()
    z = torch.randn(2, NZ, 1, 1)
    specs = {"python": f"py:{HERE / 'dcgan.py'}:make_dcgan_factory"}
    torch.jit.save(torch.jit.trace(model, z), folder / "dcgan.ts")
    specs["torchscript"] = str(folder / "dcgan.ts")
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (z,), dynamic_shapes=({0: batch},))
    torch.export.save(program, folder / "dcgan.pt2")
    specs["export"] = str(folder / "dcgan.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (z,), folder / "dcgan.onnx", input_names=["z"], output_names=["img"],
                          dynamic_axes={"z": {0: "n"}, "img": {0: "n"}}, dynamo=False)
    specs["onnx"] = str(folder / "dcgan.onnx")
    return specs


@pytest.fixture(scope="session")
def dcgan_specs(tmp_path_factory):
    return export_all(tmp_path_factory.mktemp("dcgan"))
