"""The per-station path in ONNX Runtime (``inference_backend``) against torch: same picks, probabilities within
float32 rounding, weights changes followed, torch kept for training."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import obspy
import pandas as pd
import pytest
import torch
from network_util import rjob_network

from sine_seisbench import DEFAULT_WEIGHTS
from sine_seisbench.loader import load_weights
from sine_seisbench.nn.onnx_backend import onnxruntime_available

pytestmark = pytest.mark.skipif(
    not onnxruntime_available(),
    reason="onnxruntime/onnx not installed (pip install onnxruntime onnx)",
)


@pytest.fixture(scope="module")
def network() -> tuple[obspy.Stream, pd.DataFrame]:
    """ObsPy's real BW.RJOB record on 5 virtual stations (shifted, scaled, with noise), 3 minutes."""
    return rjob_network(5, 18000, seed=1, max_shift=300)


@pytest.fixture(scope="module")
def model():
    return load_weights(DEFAULT_WEIGHTS).eval()


def test_annotate_and_picks_match_torch(model, network) -> None:
    stream, stations = network
    kw = dict(inventory=stations, batch_size=2)
    ref = model.annotate(stream, inference_backend="torch", **kw)
    got = model.annotate(stream, inference_backend="onnxruntime", **kw)
    assert model._onnx is not None  # the ONNX Runtime path ran
    assert [tr.id for tr in ref] == [tr.id for tr in got]
    diff = max(float(np.max(np.abs(a.data - b.data))) for a, b in zip(ref, got, strict=True))
    assert diff < 1e-5
    picks = [
        model.classify(stream, inference_backend=b, **kw).picks for b in ("torch", "onnxruntime")
    ]
    assert len(picks[0]) > 0
    assert [(p.trace_id, p.phase, p.peak_time) for p in picks[0]] == [
        (p.trace_id, p.phase, p.peak_time) for p in picks[1]
    ]


def test_changed_weights_are_followed_and_training_uses_torch(network) -> None:
    model = load_weights(DEFAULT_WEIGHTS).eval()
    x = torch.randn(3, 2, 3, 3001, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x, event=False, graph_picks=False, backend="onnxruntime")["picks"]
        model.backbone.out.bias.add_(
            torch.tensor([2.0, -1.0, 0.0])
        )  # in place, as an optimiser step
        after = model(x, event=False, graph_picks=False, backend="onnxruntime")["picks"]
        want = model(x, event=False, graph_picks=False, backend="torch")["picks"]
    assert float((after - before).abs().max()) > 0.1
    assert float((after - want).abs().max()) < 1e-5
    # gradients: torch, whatever the backend asked for
    out = model(x, event=False, graph_picks=False, backend="onnxruntime", logits=True)["picks"]
    out.sum().backward()
    assert model.backbone.inc.weight.grad is not None
    # a used model copies and pickles (the sessions are made again)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        with torch.no_grad():
            again = other(x, event=False, graph_picks=False, backend="onnxruntime")["picks"]
        assert float((again - want).abs().max()) < 1e-5


def test_unknown_backend_is_refused(model, network) -> None:
    stream, stations = network
    with pytest.raises(
        ValueError, match="inference_backend must be one of auto, torch, onnxruntime"
    ):
        model.annotate(stream, inventory=stations, inference_backend="tensorrt")


def test_models_with_the_same_weights_share_their_sessions() -> None:
    a, b = (load_weights(DEFAULT_WEIGHTS).eval() for _ in range(2))
    x = torch.randn(1, 2, 3, 3001)
    with torch.no_grad():
        for m in (a, b):
            m(x, event=False, graph_picks=False, backend="onnxruntime")
    assert a._onnx._sessions["full"] is b._onnx._sessions["full"]
    with torch.no_grad():
        b.backbone.out.bias.add_(0.5)
        b(x, event=False, graph_picks=False, backend="onnxruntime")
    assert a._onnx._sessions["full"] is not b._onnx._sessions["full"]


def test_an_export_that_does_not_reproduce_torch_is_not_used() -> None:
    """Exported under PyTorch's FLOP counter (a dispatch mode) the decoder lost inputs; the check after export
    catches such graphs: ``auto`` warns and runs torch, ``onnxruntime`` raises."""
    from torch.utils.flop_counter import FlopCounterMode

    from sine_seisbench.nn.onnx_backend import OnnxExportError

    model = load_weights(DEFAULT_WEIGHTS).eval()
    with torch.no_grad():
        model.backbone.out.bias.add_(0.25)  # weights no other test exported
    x = torch.randn(1, 2, 3, 3001)
    with torch.no_grad():
        want = model(x, event=False, graph_picks=False, backend="torch")["picks"]
        with pytest.warns(RuntimeWarning, match="ONNX Runtime is not used"):
            with FlopCounterMode(display=False):
                got = model(x, event=False, graph_picks=False, backend="auto")["picks"]
        assert float((got - want).abs().max()) == 0.0  # torch ran
        with pytest.raises(OnnxExportError):
            model(x, event=False, graph_picks=False, backend="onnxruntime")
        # with other weights the export is tried again (outside the counter: it works)
        model.backbone.out.bias.add_(0.25)
        want = model(x, event=False, graph_picks=False, backend="torch")["picks"]
        got = model(x, event=False, graph_picks=False, backend="onnxruntime")["picks"]
    assert float((got - want).abs().max()) < 1e-5


def test_conv2d_layout_computes_the_same_per_station_path() -> None:
    from sine_seisbench.nn.onnx_backend import conv2d_layout

    backbone = load_weights(DEFAULT_WEIGHTS).eval().backbone
    layout = conv2d_layout(backbone)
    kinds = {type(m).__name__ for m in layout.modules()}
    assert not kinds & {"Conv1d", "ConvTranspose1d", "BatchNorm1d"}
    assert {"Conv2d", "ConvTranspose2d", "BatchNorm2d"} <= kinds
    x = torch.randn(3, 3, 3001, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = backbone.decode(*backbone.encode(x))
        got = layout.decode(*layout.encode(x.unsqueeze(2))).squeeze(2)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) < 1e-4
    assert backbone.inc.weight.dim() == 3  # the original is untouched


def test_graph_branch_between_the_sessions_matches_torch() -> None:
    """With the station-graph branch (graph picks, the event head) ONNX Runtime runs encoder and decoder as two
    sessions and torch the branch between them: the same outputs as torch within float32 rounding."""
    model = load_weights(DEFAULT_WEIGHTS).eval()
    x = torch.randn(2, 4, 3, 3001, generator=torch.Generator().manual_seed(4))
    positions = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(5)) * 20.0
    with torch.no_grad():
        want = model(x, positions=positions, graph_picks=True, backend="torch")
        got = model(x, positions=positions, graph_picks=True, backend="onnxruntime")
    assert "split" in model._onnx._sessions
    for key in ("picks", "event_mean", "event_std"):
        assert float((got[key] - want[key]).abs().max()) < 1e-4, key


def test_other_window_lengths_run_in_onnxruntime() -> None:
    """Windows PhaseNet was not built for (2001 samples: the decoder pads by replication) export too."""
    from sine_seisbench.model import SINE

    torch.manual_seed(0)
    model = SINE(in_samples=2001).eval()
    x = torch.randn(2, 3, 3, 2001, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = model(x, event=False, graph_picks=False, backend="torch")["picks"]
        got = model(x, event=False, graph_picks=False, backend="onnxruntime")["picks"]
        split = model(x, event=True, graph_picks=True, backend="onnxruntime")["picks"]
        want_split = model(x, event=True, graph_picks=True, backend="torch")["picks"]
    assert float((got - want).abs().max()) < 1e-5
    assert float((split - want_split).abs().max()) < 1e-5


def test_models_of_one_component_run_with_the_event_head() -> None:
    """A single-component model (the event and arrival heads take one presence flag per component) runs
    the graph branch and the heads, in torch and with ONNX Runtime, with the same outputs."""
    from sine_seisbench.model import SINE

    torch.manual_seed(1)
    model = SINE(in_channels=1, arrival_head=True).eval()
    x = torch.randn(2, 3, 1, 3001, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = model(x, graph_picks=True, backend="torch")
        got = model(x, graph_picks=True, backend="onnxruntime")
    for key in ("picks", "event_mean", "arrival_sigma"):
        assert torch.isfinite(want[key]).all(), key
        assert float((got[key] - want[key]).abs().max()) < 1e-4, key


def test_a_batch_runs_in_calls_of_call_samples(monkeypatch) -> None:
    """A batch is run in calls of at most ``CALL_SAMPLES`` window samples (their activations stay in the CPU's
    caches); the outputs are those of one call, on the one-session and the two-session path."""
    import onnxruntime as ort

    import sine_seisbench.nn.onnx_backend as ob

    model = load_weights(DEFAULT_WEIGHTS).eval()
    x = torch.randn(3, 4, 3, 3001, generator=torch.Generator().manual_seed(8))  # 12 windows
    positions = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(9)) * 20.0

    def outputs() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            picks = model(x, event=False, graph_picks=False, backend="onnxruntime")["picks"]
            split = model(x, positions=positions, graph_picks=True, backend="onnxruntime")
        return picks, split

    whole, whole_split = outputs()
    sizes: list[int] = []
    run = ort.InferenceSession.run

    def counted(self, output_names, input_feed, *args, **kwargs):
        sizes.append(len(next(iter(input_feed.values()))))
        return run(self, output_names, input_feed, *args, **kwargs)

    monkeypatch.setattr(ob, "CALL_SAMPLES", 5 * 3001 + 10)
    monkeypatch.setattr(ort.InferenceSession, "run", counted)
    parts, parts_split = outputs()
    # one session (5, 5, 2 windows), then the encoder and the decoder sessions (each 5, 5, 2)
    assert sizes == [5, 5, 2] * 3
    assert float((parts - whole).abs().max()) <= 1e-6
    for key in ("picks", "event_mean", "event_std"):
        assert float((parts_split[key] - whole_split[key]).abs().max()) <= 1e-6, key


def test_the_decoders_crops_are_folded_into_its_transposed_convolutions() -> None:
    """The export's Slices after each up-sampling (PhaseNet's ``[..., 1:-2]`` and the crop to the skip's length)
    become pads of the ConvTranspose: no Slice is left between a ConvTranspose and its Concat, and the folded
    model gives the export's outputs bit for bit."""
    import onnx
    import onnxruntime as ort

    from sine_seisbench.nn.onnx_backend import OnnxBackbone, _Full, conv2d_layout, fold_crops

    model = load_weights(DEFAULT_WEIGHTS).eval()
    raw = OnnxBackbone._export(
        _Full(conv2d_layout(model.backbone)), (torch.zeros(2, 3, 3001),), ["x"], ["logits"]
    )
    x = np.random.default_rng(3).normal(size=(3, 3, 3001)).astype(np.float32)
    folded = fold_crops(raw, {"x": x})
    nodes = onnx.load_from_string(folded).graph.node
    producer = {out: node for node in nodes for out in node.output}
    pads = []
    for node in nodes:
        if node.op_type != "Concat" or node.input[-1] not in producer:
            continue
        up = producer[node.input[-1]]  # a decoder level's: the up-sampled features
        while up.op_type in ("Relu", "BatchNormalization"):
            up = producer[up.input[0]]
        if up.op_type == "ConvTranspose":
            pads.append([a.ints for a in up.attribute if a.name == "pads"][0])
    # (begin, end) of the time axis per level: 51 -> 47, 191 -> 188, 755 -> 751, 3007 -> 3001 samples
    assert [(p[1], p[3]) for p in pads] == [(1, 3), (1, 2), (1, 3), (2, 4)]
    want = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(folded, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(want, got)
    assert len(nodes) < len(onnx.load_from_string(raw).graph.node)
