"""A DCGAN-tutorial generator exported to every format a target can come in (built once per session)."""
import warnings
from pathlib import Path

import torch
from foreign_generators import NZ, make_dcgan

HERE = Path(__file__).parent


def export_all(folder: Path, model=None, nz: int = NZ) -> dict:
    """{kind: spec} for one generator saved as TorchScript, torch.export (.pt2) and ONNX, plus the py: spec of
    the test suite's DCGAN (the default model)."""
    model = model or make_dcgan()
    z = torch.randn(2, nz, 1, 1)
    specs = {"python": f"py:{HERE / 'foreign_generators.py'}:make_dcgan_factory"}
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


