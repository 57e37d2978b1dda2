"""Fast batch-1 inference: the same map with its training-time scaffolding folded away.

At batch 1 eager PyTorch is overhead-bound, not compute-bound: every small op costs tens of
microseconds. Weight norm (recomputed on every call) is baked into plain weights, and each batch
norm that follows a convolution is folded into it. ONNX Runtime then runs the folded inverse
close to the CPU's peak. Both paths give the same frames as the plain model (tests hold them to
float32 rounding).
"""

import io
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .realnvp import ResidualBlock


def fuse_for_inference(model):
    """A deep copy in eval mode with weight norm removed and conv -> BN pairs folded."""
    # A fresh instance, not deepcopy: parametrized modules share a dynamically made class, and
    # removing weight norm from a deep copy would strip it from the original too.
    fused = type(model)(model.config)
    fused.load_state_dict(model.state_dict())
    fused.eval()
    for module in list(fused.modules()):
        if isinstance(module, nn.Conv2d) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for module in fused.modules():
        if isinstance(module, ResidualBlock):
            # in_conv -> mid_norm -> relu: the BN is an affine map of the conv's output.
            module.in_conv = fuse_conv_bn_eval(module.in_conv, module.mid_norm)
            module.mid_norm = nn.Identity()
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


class _Inverse(nn.Module):
    """Exports `inverse` as a plain forward, which is what torch.onnx traces."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z):
        return self.model.inverse(z)


def export_inverse_onnx(model, batch=1):
    """ONNX bytes of the folded inverse for a fixed batch size."""
    fused = fuse_for_inference(model)
    z = torch.zeros(batch, *fused.shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact here
        warnings.simplefilter("ignore")
        torch.onnx.export(_Inverse(fused), (z,), buf, input_names=["z"], output_names=["x"],
                          opset_version=17, dynamo=False)
    return buf.getvalue()


class OnnxInverse:
    """z -> x through ONNX Runtime on a fixed number of threads (one for per-frame decode)."""

    def __init__(self, model, threads=1, batch=1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(export_inverse_onnx(model, batch), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, z):
        """z: float32 numpy array (batch, C, H, W) -> x as numpy, same shape."""
        return self.session.run(["x"], {"z": z})[0]
