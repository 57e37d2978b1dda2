"""The lean ONNX inverse (issue 27): the same map as the torch inverse, in fewer operators.

The figures that matter: float32 rounding (1e-5) against the plain model's inverse, and the
decoded uint8 frames within one level of the export the show used before (the plain trace).
"""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from flowvj.flow import RealNVP, load_model
from flowvj.flow.checkpoint import default_model
from flowvj.flow.fast import LeanInverse, OnnxInverse, _edge_convs, export_inverse_onnx, fuse_for_inference
from flowvj.flow.realnvp import AffineCoupling

from test_flow import perturbed


def _run(onnx_bytes, z):
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(["x"], {"z": z})[0]


def _frames(x):
    """What the Generator shows of a float image: uint8, rounded (Generator._frame)."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).astype(int)


@pytest.fixture(scope="module")
def hires():
    """The bundled CPU model, its folded copy and both exports (plain trace and lean)."""
    model = load_model(default_model("cpu"))
    fused = fuse_for_inference(model)
    return model, fused, export_inverse_onnx(fused, lean=False), export_inverse_onnx(fused)


# 256x144 is the show's target; 192x108 leaves an odd side (27) at the last scale.
@pytest.mark.parametrize("size", [(256, 144), (192, 108), (128, 72)])
def test_lean_graph_decodes_the_bundled_model_like_the_torch_inverse(hires, size):
    model, _, _, lean = hires
    z = (torch.randn(2, 3, size[1], size[0], generator=torch.Generator().manual_seed(1)) * 0.8)
    with torch.no_grad():
        reference = model.inverse(z).numpy()
    assert np.abs(_run(lean, z.numpy()) - reference).max() < 1e-5


@pytest.mark.parametrize("size", [(256, 144), (192, 108)])
def test_lean_graph_gives_todays_frames_within_one_level(hires, size):
    _, _, plain, lean = hires
    z = (np.random.default_rng(2).standard_normal((3, 3, size[1], size[0])) * 0.8).astype(np.float32)
    assert np.abs(_frames(_run(lean, z)) - _frames(_run(plain, z))).max() <= 1


@pytest.mark.parametrize("preset", ["tiny", "lite"])  # lite: two residual blocks, so two skips folded
def test_lean_inverse_is_the_models_inverse_for_other_presets(preset):
    model = perturbed(RealNVP.from_preset(preset))
    z = torch.randn(2, 3, 24, 40) * 0.8
    fused = fuse_for_inference(model)
    with torch.no_grad():
        reference = model.inverse(z)
        assert (LeanInverse(fused).eval()(z) - reference).abs().max().item() < 1e-5
    assert np.abs(OnnxInverse(model)(z.numpy()) - reference.numpy()).max() < 1e-5


def test_lean_graph_makes_masks_once_per_resolution_and_splits_once_per_coupling(hires):
    model, _, plain, lean = hires
    ops = collections.Counter(n.op_type for n in onnx.load_from_string(lean).graph.node)
    couplings = sum(isinstance(m, AffineCoupling) for m in model.modules())
    assert ops["Mod"] == model.config.num_scales  # one checkerboard per resolution
    assert ops["Split"] == couplings + model.config.num_scales - 1 and ops["Slice"] == 0
    plain_ops = collections.Counter(n.op_type for n in onnx.load_from_string(plain).graph.node)
    assert ops["Conv"] == plain_ops["Conv"]
    assert ops["BatchNormalization"] == 2 * couplings  # the out_norms are folded into the skips


def test_lean_export_keeps_the_int8_recipes_float_edges_and_leaves_the_folded_model_alone():
    model = perturbed(RealNVP.from_preset("lite"))
    fused = fuse_for_inference(model)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    lean = export_inverse_onnx(fused)
    couplings = sum(isinstance(m, AffineCoupling) for m in model.modules())
    assert len(_edge_convs(lean)) == 2 * couplings
    assert not any(m.training for m in fused.modules())
    for name, value in fused.state_dict().items():
        assert torch.equal(value, before[name]), name
