"""Any generator as ONNX, the format many owners deploy with (run here through onnxruntime's CPU provider).

Mark the batch dimension dynamic; a model exported at a fixed batch still works (faststeal calls it in
batches of that size), only slower.
"""
import torch


def export(netG: torch.nn.Module, path: str, example_code: torch.Tensor) -> None:
    netG.eval()
    torch.onnx.export(netG, (example_code,), path, input_names=["z"], output_names=["images"],
                      dynamic_axes={"z": {0: "n"}, "images": {0: "n"}}, dynamo=False)
    # then: pip install 'faststeal[onnx]'; faststeal extract --target PATH.onnx
