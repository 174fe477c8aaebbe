"""ONNX Runtime for the per-station path (:class:`~sine_seisbench.nn.phasenet.PhaseNetBackbone`) at inference.

On CPUs ONNX Runtime runs PhaseNet's U-Net faster than torch (``benchmarks/inference_levers.py``, lever
``onnxruntime``), with the same weights: probabilities differ from torch's by float32 rounding
(``tests/test_onnx_backend.py`` bounds them at 1e-5). The path is exported from :func:`conv2d_layout` (the same
layers in 2-D with a height of one, for which ONNX Runtime has faster CPU kernels), in memory, on first use and
again whenever the weights, the window length or torch's thread count change; nothing is written to disk. When
nothing runs between encoder and decoder (``annotate`` without graph picks, the event step without the arrival
head) one session runs both; otherwise two sessions, with the station-graph branch in torch between them.

``inference_backend`` (an ``annotate`` argument of :class:`~sine_seisbench.model.SINE`) picks the engine:
``"auto"`` uses ONNX Runtime when the packages ``onnxruntime`` and ``onnx`` are installed and the model runs on
the CPU in float32 without gradients, else torch; ``"onnxruntime"`` requires it; ``"torch"`` never uses it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import math
import threading
import warnings
from collections import OrderedDict
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .phasenet import PhaseNetBackbone


class OnnxExportError(RuntimeError):
    """The per-station path exported to ONNX does not reproduce torch's."""


#: The values of ``inference_backend``
BACKENDS = ("auto", "torch", "onnxruntime")


@functools.cache
def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` (which torch's exporter needs) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def check_backend(name: str) -> str:
    """``name`` if it is a known backend and usable here; a ValueError/ImportError that says what to do
    otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"inference_backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "onnxruntime" and not onnxruntime_available():
        raise ImportError(
            "inference_backend='onnxruntime' needs the packages onnxruntime and onnx: "
            "pip install onnxruntime onnx (or use inference_backend='torch')"
        )
    return name


def wants_onnxruntime(name: str, x: torch.Tensor, training: bool) -> bool:
    """Whether a forward pass on ``x`` runs the backbone in ONNX Runtime under backend ``name``: only at
    inference (eval mode, no gradients), on the CPU, in float32."""
    if name == "torch" or training or torch.is_grad_enabled():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32:
        if name == "onnxruntime":
            raise ValueError(
                f"inference_backend='onnxruntime' runs on the CPU in float32; the input is {x.dtype} on "
                f"{x.device} (use inference_backend='auto' or 'torch')"
            )
        return False
    if name == "auto":
        return onnxruntime_available()
    return True


def conv2d_layout(backbone: nn.Module) -> nn.Module:
    """A copy of ``backbone`` whose 1-D layers (``Conv1d``, ``ConvTranspose1d``, ``BatchNorm1d``) are the same
    layers in 2-D with a height of one (kernel ``(1, k)``, the same weights and statistics): it runs the same
    ``encode``/``decode`` on ``(N, C, 1, T)``. ONNX Runtime's CPU kernels for 2-D convolutions (blocked NCHWc
    layouts) are faster than its 1-D ones (SINE ``annotate`` 1.27x against the 1-D export: the note in
    ``benchmarks/results/inference_levers.md``); the values are the same up to float32 rounding (checked at every
    export; the effect on events: ``benchmarks/backend_events.py``)."""
    copy = deepcopy(backbone)

    def replaced(layer: nn.Module) -> nn.Module | None:
        if isinstance(layer, nn.Conv1d | nn.ConvTranspose1d):
            shape = dict(
                kernel_size=(1, layer.kernel_size[0]),
                stride=(1, layer.stride[0]),
                dilation=(1, layer.dilation[0]),
                groups=layer.groups,
                bias=layer.bias is not None,
            )
            if isinstance(layer, nn.ConvTranspose1d):
                new = nn.ConvTranspose2d(
                    layer.in_channels,
                    layer.out_channels,
                    padding=(0, layer.padding[0]),
                    output_padding=(0, layer.output_padding[0]),
                    **shape,
                )
            else:
                padding = layer.padding
                new = nn.Conv2d(
                    layer.in_channels,
                    layer.out_channels,
                    padding=padding if isinstance(padding, str) else (0, padding[0]),
                    **shape,
                )
        elif isinstance(layer, nn.BatchNorm1d):
            new = nn.BatchNorm2d(
                layer.num_features,
                layer.eps,
                layer.momentum,
                layer.affine,
                layer.track_running_stats,
            )
            new.load_state_dict(layer.state_dict())
            return new
        else:
            return None
        with torch.no_grad():
            new.weight.copy_(layer.weight.unsqueeze(2))
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new

    for module in list(copy.modules()):
        for child_name, child in list(module.named_children()):
            new = replaced(child)
            if new is not None:
                setattr(module, child_name, new)
    return copy.eval()


#: Operators between a ConvTranspose and the Slices :func:`fold_crops` folds into it: per channel and sample, so
#: that cropping before them is cropping after them
_SAMPLEWISE = ("BatchNormalization", "Relu")


def fold_crops(model: bytes, feeds: dict[str, np.ndarray]) -> bytes:
    """The exported model with the crops of PhaseNet's decoder folded into its transposed convolutions.

    The decoder crops each up-sampled level (``[..., 1:-2]``, then to the skip's length): in the export a
    ConvTranspose, BatchNormalization, Relu and two Slices of the time axis, which ONNX Runtime runs as two
    copies after computing samples that are dropped. Each such chain becomes a ConvTranspose whose ``pads``
    drop those samples (ONNX's ConvTranspose computes only the samples kept, the same sums). The Slices' bounds
    are computed from shapes in the export, so they are evaluated on ``feeds`` (the window length is fixed per
    export). The folded model is used only if it gives bit for bit the outputs of the export on ``feeds``
    (otherwise the export is returned as it is). 6-8 % less time per window on the project's CPU."""
    import onnx
    import onnxruntime as ort

    graph_model = onnx.load_from_string(model)
    graph = graph_model.graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only(name: str, ops: tuple[str, ...]) -> Any | None:
        found = [n for n in consumers.get(name, []) if n.op_type in ops]
        return found[0] if len(found) == 1 else None

    chains = []  # (ConvTranspose, last samplewise node, slices)
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "ConvTranspose" or "output_shape" in attrs or any(attrs.get("pads", [])):
            continue
        last, name = node, node.output[0]
        while (nxt := only(name, _SAMPLEWISE)) is not None:
            last, name = nxt, nxt.output[0]
        slices = []
        while (nxt := only(name, ("Slice",))) is not None and nxt.input[0] == name:
            slices.append(nxt)
            name = nxt.output[0]
        if slices and name not in {o.name for o in graph.output}:
            chains.append((node, last, slices))
    if not chains:
        return model
    # the Slices' bounds and the lengths they cut, evaluated on the feeds
    wanted = [node.output[0] for node, _, _ in chains]
    wanted += [name for _, _, slices in chains for sl in slices for name in sl.input[1:] if name]
    probe = onnx.load_from_string(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        onnx.helper.make_empty_tensor_value_info(n) for n in dict.fromkeys(wanted) if n not in known
    )
    session = ort.InferenceSession(
        probe.SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, feeds), strict=True))
    rank = values[wanted[0]].ndim
    folded = []
    for node, last, slices in chains:
        keep = range(values[node.output[0]].shape[-1])
        for sl in slices:
            starts, ends, axes, steps = (
                [int(v) for v in np.atleast_1d(values[n])] if n else None
                for n in (list(sl.input[1:]) + [""] * 4)[:4]
            )
            axes = axes or list(range(len(starts)))
            if (
                len(starts) != 1
                or axes[0] % rank != rank - 1
                or (steps is not None and steps != [1])
            ):
                break
            keep = keep[starts[0] : ends[0]]
        else:
            if len(keep) == 0:
                continue
            length = values[node.output[0]].shape[-1]
            pads = [0] * (2 * (rank - 2))
            pads[rank - 3] = keep.start
            pads[-1] = length - keep.stop
            folded.append((node, last, slices, pads))
    if not folded:
        return model
    for node, last, slices, pads in folded:
        for attr in list(node.attribute):
            if attr.name == "pads":
                node.attribute.remove(attr)
        node.attribute.append(onnx.helper.make_attribute("pads", pads))
        for user in consumers.get(slices[-1].output[0], []):
            for i, name in enumerate(user.input):
                if name == slices[-1].output[0]:
                    user.input[i] = last.output[0]
        for sl in slices:
            graph.node.remove(sl)
    # nodes left without a consumer (the Slices' bound computations)
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if not any(o in used for o in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    result = graph_model.SerializeToString()
    # the reference is the export run as it is (the probe's intermediate outputs keep ONNX Runtime from fusing
    # nodes, so its values are not the export's bit for bit)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ort.InferenceSession(result, providers=["CPUExecutionProvider"]).run(None, feeds)
    if all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)):
        return result
    return model


class _Layout(nn.Module):
    """The per-station path of a :func:`conv2d_layout` copy, fed and returning 1-D tensors ``(N, C, T)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


class _Full(_Layout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.decode(*self.backbone.encode(x.unsqueeze(2))).squeeze(2)


class _Encoder(_Layout):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, skips = self.backbone.encode(x.unsqueeze(2))
        return tuple(t.squeeze(2) for t in (h, *skips))


class _Decoder(_Layout):
    def forward(self, h: torch.Tensor, *skips: torch.Tensor) -> torch.Tensor:
        decoded = self.backbone.decode(h.unsqueeze(2), [t.unsqueeze(2) for t in skips])
        return decoded.squeeze(2)


#: Window samples per ONNX Runtime call (32 windows of 3001 samples): a batch is run in calls of this size.
#: PhaseNet's activations for 256 windows are ~50 MB a layer, far beyond the caches; on the project's CPU (2 MB of
#: L2 a core) a call of 32 windows took 0.43 ms a window against 0.51 for 256 (``OnnxBackbone._run``; SINE
#: ``classify`` of 16 stations x 1 h 3.6 -> 3.1-3.2 s in same-machine runs, same outputs bit for bit).
CALL_SAMPLES = 32 * 3001

#: Exported sessions by kind ("full": one session; "split": encoder, decoder and skip names), window length,
#: channels, threads and weights digest, shared by every model in the process
_SHARED: OrderedDict[tuple, Any] = OrderedDict()
_SHARED_MAX = 4
_SHARED_LOCK = threading.Lock()


def _weights_digest(module: nn.Module) -> str:
    """sha256 of a module's state (names, shapes, values)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _weights_version(module: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``module`` is replaced or changed in place (optimiser steps,
    ``load_state_dict``)."""
    return tuple((id(t), t._version) for t in (*module.parameters(), *module.buffers()))


class OnnxBackbone:
    """The per-station path of ``backbone`` as ONNX Runtime sessions (CPU, float32), in two forms made on first
    use: ``"full"``, encoder and decoder in one session (:meth:`logits`: when nothing runs between them), and
    ``"split"``, an encoder and a decoder session (:meth:`encode`, :meth:`decode`: the station-graph branch runs
    in torch between them). Both are exported from :func:`conv2d_layout`.

    :param backbone: The torch module; its weights are read at export, and a change of them is noticed.
    """

    def __init__(self, backbone: PhaseNetBackbone) -> None:
        self._backbone = backbone
        self._key: tuple | None = None
        #: sessions made for ``_key``, by kind
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._failed: tuple | None = None  # weights version whose export failed its check

    def __getstate__(self) -> dict[str, Any]:
        # sessions and the lock are neither copied nor pickled (Dask workers, deepcopy): made again on first use
        return {"backbone": self._backbone}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["backbone"])

    @staticmethod
    def _export(
        module: nn.Module,
        args: tuple[torch.Tensor, ...],
        inputs: list[str],
        outputs: list[str],
    ) -> bytes:
        """``module`` on ``args`` exported to ONNX (batch axis dynamic), serialised."""
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # the tracer's notes on the decoder's length check (fixed for a fixed window length) and the
            # exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                buffer,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
                dynamo=False,
            )
        return buffer.getvalue()

    @staticmethod
    def _session(model: bytes) -> Any:
        """An ONNX Runtime CPU session of a serialised model, with torch's thread count."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # idle worker threads sleep instead of spinning (as torch's with OMP_WAIT_POLICY=PASSIVE): on a busy
        # machine spinning threads take the cores the other work needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def usable(self, samples: int, channels: int, required: bool, split: bool = False) -> bool:
        """Whether the sessions for windows of ``channels x samples`` exist or can be made and pass
        :meth:`_check` (then :meth:`logits`, or with ``split`` :meth:`encode` and :meth:`decode`, run them).
        When they cannot: ``required`` (``inference_backend="onnxruntime"``) raises :class:`OnnxExportError`;
        otherwise a warning, once per weights, and torch runs."""
        try:
            self._ready(samples, channels, "split" if split else "full")
            return True
        except OnnxExportError as e:
            if required:
                raise
            version = _weights_version(self._backbone)
            if self._failed != version:
                self._failed = version
                warnings.warn(
                    f"SINE: ONNX Runtime is not used ({e}); the network runs in torch. Set "
                    "inference_backend='torch' to silence this.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return False

    def _ready(self, samples: int, channels: int, kind: str) -> None:
        key = (samples, channels, torch.get_num_threads(), _weights_version(self._backbone))
        with self._lock:
            if self._failed == key[-1]:
                raise OnnxExportError("the export of these weights failed before")
            if self._key != key:
                self._sessions, self._key = {}, key
            if kind in self._sessions:
                return
            # models with the same weights (every load of the shipped ones) share their sessions
            shared_key = (kind, *key[:3], _weights_digest(self._backbone))
            with _SHARED_LOCK:
                shared = _SHARED.pop(shared_key, None)
                if shared is None:
                    try:
                        shared = self._export_kind(kind, samples, channels)
                    except OnnxExportError:
                        raise
                    except Exception as e:  # noqa: BLE001 - any exporter failure: torch runs instead
                        raise OnnxExportError(f"the export failed: {e}") from e
                _SHARED[shared_key] = shared  # the most recently used last
                while len(_SHARED) > _SHARED_MAX:
                    _SHARED.popitem(last=False)
            self._sessions[kind] = shared

    def _export_kind(self, kind: str, samples: int, channels: int) -> Any:
        layout = conv2d_layout(self._backbone)
        example = torch.zeros(2, channels, samples)
        x = torch.randn(4, channels, samples, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = self._backbone.decode(*self._backbone.encode(x)).numpy()
        if kind == "full":
            feeds = {"x": x.numpy()}
            full = self._session(
                fold_crops(self._export(_Full(layout), (example,), ["x"], ["logits"]), feeds)
            )
            self._check(full, ["x"], want, full.run(None, feeds)[0])
            return full
        with torch.no_grad():
            h, skips = self._backbone.encode(example)
        skip_names = [f"skip{i}" for i in range(len(skips))]
        encoder = self._session(
            self._export(_Encoder(layout), (example,), ["x"], ["h", *skip_names])
        )
        self._check(encoder, ["x"], None, None)
        out = encoder.run(None, {"x": x.numpy()})
        feeds = dict(zip(["h", *skip_names], out, strict=True))
        decoder = self._session(
            fold_crops(
                self._export(_Decoder(layout), (h, *skips), ["h", *skip_names], ["logits"]), feeds
            )
        )
        got = decoder.run(None, feeds)[0]
        self._check(decoder, ["h", *skip_names], want, got)
        return encoder, decoder, skip_names

    @staticmethod
    def _check(session: Any, inputs: list[str], want: np.ndarray | None, got: Any) -> None:
        """An exported session against torch on random windows: the inputs it declares and (``want``: torch's
        logits, ``got``: the session's) the logits.

        :raises OnnxExportError: when they differ (an export traced under something that changed the graph, an
                                 operator ONNX Runtime computes differently); ``auto`` then keeps torch."""
        names = [i.name for i in session.get_inputs()]
        if names != inputs:
            raise OnnxExportError(
                f"the exported per-station path has inputs {names}, expected {inputs}"
            )
        if want is None:
            return
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else math.inf
        if not diff <= 1e-3 * max(1.0, float(np.max(np.abs(want)))):
            raise OnnxExportError(
                f"ONNX Runtime's per-station path differs from torch's by {diff:.3g} in the logits"
            )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``PhaseNetBackbone.decode(*encode(x))`` of ``x`` ``(N, channels, samples)``, ``N > 0``, by the
        ``"full"`` session :meth:`usable` made ready."""
        out = self._run(self._sessions["full"], {"x": x.numpy()})
        return torch.from_numpy(out[0])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`PhaseNetBackbone.encode` of ``x`` ``(N, channels, samples)``, ``N > 0``, by the ``"split"``
        sessions :meth:`usable` made ready for these windows."""
        encoder, _, _ = self._sessions["split"]
        out = self._run(encoder, {"x": x.numpy()})
        tensors = [torch.from_numpy(a) for a in out]
        return tensors[0], tensors[1:]

    def decode(self, h: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`PhaseNetBackbone.decode` of ``h`` and ``skips`` (as :meth:`encode` returns them)."""
        _, decoder, skip_names = self._sessions["split"]
        feeds = {"h": h.numpy()}
        for name, skip in zip(skip_names, skips, strict=True):
            feeds[name] = skip.numpy()
        return torch.from_numpy(self._run(decoder, feeds)[0])

    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``session.run`` on ``feeds`` (every input with the windows on axis 0), in calls of at most
        :data:`CALL_SAMPLES` window samples whose outputs are concatenated: the activations of a smaller call
        stay in the CPU's caches (the windows are independent, so the values are the same)."""
        n = len(next(iter(feeds.values())))
        step = max(1, CALL_SAMPLES // self._key[0])
        feeds = {name: np.ascontiguousarray(a) for name, a in feeds.items()}
        if n <= step:
            return session.run(None, feeds)
        parts = [
            session.run(None, {name: a[i : i + step] for name, a in feeds.items()})
            for i in range(0, n, step)
        ]
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


__all__ = [
    "BACKENDS",
    "OnnxBackbone",
    "conv2d_layout",
    "check_backend",
    "fold_crops",
    "onnxruntime_available",
    "wants_onnxruntime",
]
