"""Fast inference: the same map with its training-time scaffolding folded away.

At batch 1 eager PyTorch is overhead-bound, not compute-bound: every small op costs tens of
microseconds. Weight norm (recomputed on every call) is baked into plain weights, and each batch
norm that follows a convolution is folded into it. ONNX Runtime then runs the folded inverse
close to the CPU's peak. Both paths give the same frames as the plain model (tests hold them to
float32 rounding).

The ONNX graph has dynamic batch, height and width: the flow is fully convolutional and its masks
come from the input's shape, so one export serves every generation size. A graph exported at a
fixed size decoded only ~1.5 % faster (paired, interleaved calls at 64x36 and 128x72 on the dev
machine), while one export per model means a second Generator at another size costs only a
session (~0.1-0.4 s), not another trace (1-3 s idle, up to 10 s on a busy machine).
Exports are cached per model in memory (invalidated when any of its parameters or buffers
change) and, given a cache folder, on disk under a digest of the weights and the library versions:
the fp32 export takes 1-3 s and the int8 calibration 5-10 s more on the 2-core dev machine (3x
that while it is busy), which a show start should not pay twice.

The graph exported is `LeanInverse`, not a trace of `RealNVP.inverse` (issue 27): the same floats
in 327 ONNX Runtime kernels instead of 698 for hires (masks made once per resolution, the
coupling's mask arithmetic cut to what changes a value, static Splits, out_norm folded into the
skips). Convolutions are ~75 % of a decode and ran at ~31 GFLOP/s one thread where they have 8
channels at full resolution (57-71 with 32 at a quarter of the side); the rest is what the lean
graph cut: one thread's CPU time per decode x0.85-0.88 of the plain trace's at 128x72-256x144
(three runs at load 10: x0.83-0.91; benchmarks/flow/decode_profile.py, whose baseline is the plain
trace, export_inverse_onnx(lean=False)).
Tried and not kept: ONNX Runtime without its NCHWc layout (ORT_ENABLE_EXTENDED) x1.3-1.5 slower; an
export at the exact size (masks folded into constants) no faster than the dynamic lean graph.

`quantize_inverse` makes an int8 copy (static QDQ, convolutions only) for the `int8` precision.
"""

import hashlib
import io
import json
import os
import tempfile
import threading
import warnings
import weakref

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..atomic import atomic_path
from .realnvp import ResidualBlock

EXPORT_VERSION = 2  # bump when the export or the quantisation recipe changes: old disk caches go stale
EXPORT_SIDE = 8  # side of the example input traced for the export: small, so tracing is quick
PRECISIONS = ("fp32", "int8")

_cache = weakref.WeakKeyDictionary()  # model -> {key: (fingerprint, bytes)}
_cache_lock = threading.Lock()  # one export at a time: the tracer is not meant to run in parallel


def fuse_for_inference(model):
    """A copy in eval mode with weight norm removed and conv -> BN pairs folded."""
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


# ---- the lean inverse: the same map, written for the exporter ----------------------------------


def _fold_out_norm(net):
    """The s/t net's out_norm (BN -> ReLU -> out_conv) folded into its 1x1 skip convs, whose sum it
    normalises: exact up to float rounding because the skips have no padding. Copies, in place of
    the shared modules, so the folded model keeps its own."""
    scale = net.out_norm.weight / torch.sqrt(net.out_norm.running_var + net.out_norm.eps)
    shift = net.out_norm.bias - net.out_norm.running_mean * scale
    skips = nn.ModuleList()
    for i, skip in enumerate(net.skips):
        folded = nn.Conv2d(skip.in_channels, skip.out_channels, 1)
        folded.weight.data = skip.weight.detach() * scale.view(-1, 1, 1, 1)
        folded.bias.data = skip.bias.detach() * scale + (shift if i == 0 else 0.0)
        skips.append(folded)
    return skips


class _LeanNet(nn.Module):
    """An s/t net that returns exp(-s) and t: out_norm folded away, no `0.0 +` seed for the skip sum,
    and -s_scale applied before the exp (the same float operations as AffineCoupling.inverse)."""

    def __init__(self, net, s_scale):
        super().__init__()
        self.in_norm, self.in_conv = net.in_norm, net.in_conv  # shared with the folded model
        self.blocks, self.out_conv = net.blocks, net.out_conv
        self.skips = _fold_out_norm(net)
        self.register_buffer("neg_s_scale", -s_scale.detach().clone())

    def forward(self, x):
        h = self.in_conv(self.in_norm(x))
        skip = None
        for block, to_skip in zip(self.blocks, self.skips):
            h = block(h)
            skip = to_skip(h) if skip is None else skip + to_skip(h)
        half = self.out_conv.out_channels // 2  # a constant: one Split, not Shape/Div/Slice ops
        raw_s, t = self.out_conv(F.relu(skip)).split([half, half], dim=1)
        return torch.exp(self.neg_s_scale * torch.tanh(raw_s)), t


class _LeanCoupling(nn.Module):
    """AffineCoupling.inverse with the mask arithmetic cut to what changes a value.

    Checkerboard: y*b + (1-b)*((y - t*(1-b)) * exp(-s*(1-b))) is y where b = 1 and (y - t)*exp(-s)
    where b = 0, so y*b (the net's input, reused) + (y - t)*exp(-s)*(1-b) gives the same floats
    with 2 Muls, a Sub and an Add fewer per coupling, on masks made once per resolution. (A Where
    on a bool mask did the same in 3 ops but ONNX Runtime broadcasts it slowly: no faster.)
    Channel-wise: the halves stay apart (no chunk / cat per coupling) until the scale joins them
    once, before its unsqueeze.
    """

    def __init__(self, coupling):
        super().__init__()
        self.checkerboard = coupling.mask_type == "checkerboard"
        self.reverse = coupling.reverse
        self.net = _LeanNet(coupling.net, coupling.s_scale)

    def forward(self, y, masks):
        """y: the image (checkerboard) or its (first, second) channel halves; masks: (b, 1 - b) in
        this coupling's orientation (checkerboard only)."""
        if self.checkerboard:
            b, not_b = masks
            y_kept = y * b
            exp_neg_s, t = self.net(y_kept)
            return y_kept + (y - t) * exp_neg_s * not_b
        first, second = y
        kept, changed = (second, first) if self.reverse else (first, second)
        exp_neg_s, t = self.net(kept)
        changed = (changed - t) * exp_neg_s
        return (changed, kept) if self.reverse else (kept, changed)


def _checkerboards(z):
    """{reverse: (b, 1 - b)} at z's resolution, made once per scale rather than per coupling."""
    rows = torch.arange(z.shape[2]).view(-1, 1)
    cols = torch.arange(z.shape[3]).view(1, -1)
    odd = ((rows + cols) % 2).to(z.dtype).view(1, 1, z.shape[2], z.shape[3])
    even = 1 - odd
    return {False: (odd, even), True: (even, odd)}


class _LeanScale(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.in_couplings = nn.ModuleList(_LeanCoupling(c) for c in scale.in_couplings)
        self.is_last = scale.is_last
        self.channels = scale.in_couplings[0].net.in_norm.num_features  # a constant in the graph
        if not self.is_last:
            self.out_couplings = nn.ModuleList(_LeanCoupling(c) for c in scale.out_couplings)
            self.next = _LeanScale(scale.next)

    def forward(self, z):
        if not self.is_last:
            half = 2 * self.channels  # pixel_unshuffle = squeeze2x2, then a Split as in _LeanNet
            kept, factored = F.pixel_unshuffle(z, 2).split([half, half], dim=1)
            halves = (self.next(kept), factored)
            for coupling in reversed(self.out_couplings):
                halves = coupling(halves, None)
            z = F.pixel_shuffle(torch.cat(halves, dim=1), 2)  # = unsqueeze2x2: one DepthToSpace
        masks = _checkerboards(z)
        for coupling in reversed(self.in_couplings):
            z = coupling(z, masks[coupling.reverse])
        return z


class LeanInverse(nn.Module):
    """A folded model's inverse, z -> x, rewritten for export (see _LeanCoupling); the same map."""

    def __init__(self, fused):
        super().__init__()
        self.alpha = fused.config.alpha
        self.scales = _LeanScale(fused.scales)

    def forward(self, z):
        a = self.alpha
        return (torch.sigmoid(self.scales(z)) - a) / (1 - 2 * a)


class _Inverse(nn.Module):
    """Exports `inverse` as a plain forward, which is what torch.onnx traces."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z):
        return self.model.inverse(z)


def export_inverse_onnx(fused, lean=True):
    """ONNX bytes of a folded model's inverse, batch, height and width dynamic: LeanInverse, or
    with lean=False the plain trace of `fused.inverse` (the export before issue 27, kept as the
    benchmarks' baseline).

    The wrapper is put in eval mode before the export: torch.onnx.export restores the mode the
    top module had, recursively, and a fresh wrapper is in training mode, so the folded model
    would come back in training mode and its next eager call would overwrite its batch-norm
    statistics (tests check that it does not).
    """
    wrapper = (LeanInverse(fused) if lean else _Inverse(fused)).eval()
    z = torch.zeros(1, fused.config.in_channels, EXPORT_SIDE, EXPORT_SIDE)
    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact here
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (z,), buf, input_names=["z"], output_names=["x"], opset_version=17,
                          dynamic_axes={"z": axes, "x": axes}, dynamo=False)
    return buf.getvalue()


def _fingerprint(model):
    """Changes whenever a parameter or buffer of the model is changed in place (training, loading)."""
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


def _digest(model, key):
    """Names one export of one model: the weights, the config, the recipe and the library versions."""
    import onnxruntime

    h = hashlib.sha256(json.dumps([EXPORT_VERSION, key, torch.__version__, onnxruntime.__version__,
                                   model.config.to_dict()]).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _on_disk(model, key, make, cache_dir):
    """make()'s bytes, read from cache_dir/onnx/ when an earlier run wrote them there."""
    path = os.path.join(cache_dir, "onnx", f"{_digest(model, key)}-{key}.onnx")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    data = make()
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
    except OSError as e:  # a read-only or full disk costs the next start time, nothing else
        warnings.warn(f"could not cache the ONNX export in {path}: {e}")
    return data


def cached(model, key, make, cache_dir=None):
    """make() once per model and key, again only after the model's weights have changed; with a
    cache_dir, once per weights and library versions across runs."""
    with _cache_lock:
        entries = _cache.setdefault(model, {})
        fingerprint = _fingerprint(model)
        if key not in entries or entries[key][0] != fingerprint:
            entries[key] = (fingerprint, _on_disk(model, key, make, cache_dir) if cache_dir else make())
        return entries[key][1]


def inverse_onnx(model, cache_dir=None):
    """The fp32 ONNX inverse of a model, exported once per model (cached)."""
    return cached(model, "fp32", lambda: export_inverse_onnx(fuse_for_inference(model)), cache_dir)


class _Latents:
    """onnxruntime's calibration reader: one latent (1, C, H, W) per call, then None."""

    def __init__(self, latents):
        self._it = iter(np.asarray(latents, dtype=np.float32))

    def get_next(self):
        z = next(self._it, None)
        return None if z is None else {"z": z[None]}


def _edge_convs(onnx_bytes):
    """Names of each s/t net's first and last convolution (the ones kept in float32)."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    return [n.name for n in graph.node if n.op_type == "Conv"
            and ("/net/in_conv" in n.name or "/net/out_conv" in n.name)]


def quantize_inverse(onnx_bytes, calibration_latents):
    """int8 QDQ copy of an fp32 inverse, calibrated on the given latents (N, C, H, W).

    What is quantised was chosen by PSNR against fp32 (lite, 128x72, the midpoints between the
    demo images' latents; benchmarks/flow/gen_size.py reports the chosen recipe at every size):
    - only the residual blocks' and skips' convolutions (97.4 % of lite's FLOPs). Each s/t
      net's first conv (it sees the masked image) and last conv (it makes s and t, which go
      through exp(-s) into every pixel) stay float32, as does all elementwise coupling
      arithmetic: quantising them too gave 32 dB instead of 42;
    - weights per output channel, 7-bit (reduce_range): on AVX2 CPUs without VNNI the u8 x s8
      kernels saturate their 16-bit sums, which alone cost 12 dB (22 dB instead of 34);
    - activations per tensor (uint8, asymmetric) from their min/max over the calibration set
      (percentile calibration, tried with 8-bit weights, gained under 1 dB).
    On the dev machine's AVX2 CPU int8 was not faster than fp32 at batch 1 but 1.3-1.6x slower:
    the QDQ graph wraps each int8 conv in Q/DQ nodes and NCHW <-> NHWC transposes (82 of them),
    memory-bound work that ate the int8 arithmetic's gain. CPUs with VNNI or AMX may differ.
    """
    import logging

    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "fp32.onnx"), os.path.join(folder, "int8.onnx")
        with open(source, "wb") as f:
            f.write(onnx_bytes)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing": already folded
        try:
            quantize_static(source, target, _Latents(calibration_latents), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv"], nodes_to_exclude=_edge_convs(onnx_bytes),
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        finally:
            logging.getLogger().setLevel(quiet)
        with open(target, "rb") as f:
            return f.read()


def onnx_providers(device):
    """ONNX Runtime providers for a device, or None when this onnxruntime cannot run there."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return None


class OnnxInverse:
    """z -> x through ONNX Runtime, any batch and even size, on a fixed number of threads.

    model: a RealNVP, or the bytes of an exported inverse (fp32 or int8).
    threads: intra-op threads (one for per-frame decode at small sizes, see show/generator.py).
    """

    def __init__(self, model, threads=1, device="cpu"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: on 2 cores a spinning second thread took
        # the CPU the window, the analyzer and the browser need between decodes (live 128x72 at
        # 30 fps in a window: 24.0 fps, p95 97 ms spinning; 30.0 fps, p95 35 ms not; same run).
        # Spinning only while a run lasts (session.force_spinning_stop) was no better: the same on
        # one thread, x1.8-3.8 slower on two with the machine busy (decode_profile.py, issue 27).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        onnx_bytes = model if isinstance(model, bytes) else inverse_onnx(model)
        providers = onnx_providers(device)
        if providers is None:
            providers = ", ".join(ort.get_available_providers())
            raise ValueError(f"this onnxruntime has no CUDA provider (it has {providers})")
        self.session = ort.InferenceSession(onnx_bytes, options, providers=providers)

    def __call__(self, z):
        """z: float32 numpy array (batch, C, H, W) -> x as numpy, same shape."""
        return self.session.run(["x"], {"z": np.ascontiguousarray(z, dtype=np.float32)})[0]
