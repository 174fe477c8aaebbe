"""Cheap inference levers on SINE's network, measured side by side in one process: speed of ``annotate`` with
the shipped default weights and the difference of its outputs (pick probabilities and picks) to the plain run.

The default weights run only the per-station path (PhaseNet's U-Net: convolutions, batch norms, ReLU) in
``annotate`` (``graph_picks`` is false, the event head is not needed there), so the levers are applied to that
path by replacing ``model.backbone``'s ``encode``/``decode`` for the run:

- ``baseline``: torch (``inference_backend="torch"``, ``torch.no_grad`` in ``run_groups``); every lever but
  ``onnxruntime`` patches this torch path;
- ``onnxruntime``: ``inference_backend="onnxruntime"`` (the shipped default, ``"auto"``, where it is installed):
  the per-station path exported to ONNX (``conv2d_layout``, one session) and run by ONNX Runtime;
- ``inference_mode``: ``torch.inference_mode`` instead of ``no_grad`` (patched globally for the run);
- ``bn_fold``: every batch norm folded into the convolution before it (``fuse_conv_bn_eval``);
- ``jit_freeze``: TorchScript trace, ``torch.jit.freeze`` + ``optimize_for_inference`` (folds batch norms, may
  use oneDNN);
- ``compile``: ``torch.compile`` (inductor; compile time reported separately, not in the timing);
- ``bf16``: CPU autocast to bfloat16;
- ``int8_static``: FX static int8 quantisation (fbgemm), calibrated on the first windows (dynamic int8
  quantisation only covers Linear/LSTM, which the default weights never run in ``annotate``).

Each lever is warmed up, then timed ``--repeats`` times alternating with the baseline (median reported). Output
differences: the largest absolute difference of the annotation curves (probabilities), and of the picks (P and
S, SeisBench's rule on the curves): how many picks appear or vanish and the largest peak-time shift of the
others.

Run from the repository root::

    python benchmarks/inference_levers.py --stations 16 --minutes 10 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_speed import build_network  # noqa: E402

#: Levers run by default; ``compile`` (inductor took 200 s to compile on the 2-core machine) and
#: ``int8_static`` (FX tracing fails on the decoder's length check) only on request
LEVERS = ("onnxruntime", "inference_mode", "bn_fold", "jit_freeze", "bf16")
EXTRA_LEVERS = ("compile", "int8_static")


class FullNet(torch.nn.Module):
    """The per-station path as one module: logits of normalised windows ``(N, C, samples)``."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the class's methods: the instance's may be patched by whole_net while this runs
        cls = type(self.backbone)
        h, skips = cls.encode(self.backbone, x)
        return cls.decode(self.backbone, h, skips)


def fold_batch_norms(backbone: torch.nn.Module) -> torch.nn.Module:
    """A copy of the backbone with every batch norm folded into its convolution (eval mode)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    b = copy.deepcopy(backbone).eval()
    b.inc = fuse_conv_bn_eval(b.inc, b.in_bn)
    b.in_bn = torch.nn.Identity()
    for level in b.down_branch:
        level[0] = fuse_conv_bn_eval(level[0], level[1])
        level[1] = torch.nn.Identity()
        if level[2] is not None:
            level[2] = fuse_conv_bn_eval(level[2], level[3])
            level[3] = torch.nn.Identity()
    for level in b.up_branch:
        level[0] = fuse_conv_bn_eval(level[0], level[1], transpose=True)
        level[1] = torch.nn.Identity()
        level[2] = fuse_conv_bn_eval(level[2], level[3])
        level[3] = torch.nn.Identity()
    return b


@contextlib.contextmanager
def whole_net(model: Any, net: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Runs ``net`` (normalised windows -> logits) in place of the backbone's encode + decode (valid for the
    annotate path of weights with ``graph_picks`` false: nothing else reads the bottleneck)."""
    backbone = model.backbone
    encode, decode = backbone.encode, backbone.decode
    backbone.encode = lambda x: (x, [])
    backbone.decode = lambda h, skips: net(h)
    try:
        yield
    finally:
        backbone.encode, backbone.decode = encode, decode


#: The ``inference_backend`` of the next run (``onnxruntime`` is the only lever that changes it)
BACKEND = {"name": "torch"}


@contextlib.contextmanager
def lever(name: str, model: Any, sample: torch.Tensor, log: list[str]) -> Iterator[None]:
    """The model patched with lever ``name`` (``sample``: normalised windows for tracing/calibration)."""
    if name == "baseline":
        yield
    elif name == "onnxruntime":
        BACKEND["name"] = "onnxruntime"
        try:
            yield
        finally:
            BACKEND["name"] = "torch"
    elif name == "inference_mode":
        saved = torch.no_grad
        torch.no_grad = torch.inference_mode  # type: ignore[misc]
        try:
            yield
        finally:
            torch.no_grad = saved  # type: ignore[misc]
    elif name == "bn_fold":
        folded = FullNet(fold_batch_norms(model.backbone))
        with whole_net(model, folded):
            yield
    elif name == "jit_freeze":
        with torch.no_grad():
            traced = torch.jit.trace(FullNet(model.backbone).eval(), sample, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        with whole_net(model, frozen):
            yield
    elif name == "compile":
        compiled = torch.compile(FullNet(model.backbone).eval(), dynamic=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(sample)
        log.append(f"compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
        with whole_net(model, compiled):
            yield
    elif name == "bf16":
        net = FullNet(model.backbone).eval()

        def bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x).float()

        with whole_net(model, bf16):
            yield
    elif name == "int8_static":
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        net = FullNet(copy.deepcopy(model.backbone)).eval()
        prepared = prepare_fx(net, get_default_qconfig_mapping("fbgemm"), (sample,))
        with torch.no_grad():
            prepared(sample)
        quantized = convert_fx(prepared)
        with whole_net(model, quantized):
            yield
    else:
        raise ValueError(
            f"unknown lever {name!r}; choose from baseline, {', '.join(LEVERS + EXTRA_LEVERS)}"
        )


def normalised_sample(model: Any, stream: Any, n: int) -> torch.Tensor:
    """``n`` normalised 30 s station windows of the stream (for tracing and calibration)."""
    data = []
    for tr_z in stream.select(channel="*Z")[:n]:
        sta = stream.select(station=tr_z.stats.station)
        x = np.stack([sta.select(channel=f"*{c}")[0].data[: model.in_samples] for c in "ZNE"])
        data.append(x.astype(np.float32))
    x = torch.as_tensor(np.stack(data))[:, None]
    x, _ = model.annotate_batch_pre(x, {})
    return x[:, 0]


def picks_of(model: Any, annotations: Any) -> list[tuple[str, str, float]]:
    """P/S picks (station, phase, peak time as POSIX seconds) of annotation traces, SeisBench's rule."""
    picks = model.classify_aggregate(annotations, dict(model.default_args)).picks
    return [(p.trace_id, p.phase, float(p.peak_time.timestamp)) for p in picks]


def compare(model: Any, base: Any, other: Any, tolerance_s: float = 0.5) -> dict[str, float]:
    """Largest curve difference and pick changes between two annotation streams."""
    diff = 0.0
    for a, b in zip(base, other, strict=True):
        assert a.id == b.id and a.stats.npts == b.stats.npts
        d = np.abs(a.data.astype(np.float64) - b.data.astype(np.float64))
        diff = max(diff, float(np.nanmax(d)) if np.isfinite(d).any() else 0.0)
    pa, pb = picks_of(model, base), picks_of(model, other)
    matched, shift, unmatched_b = 0, 0.0, list(pb)
    for sid, phase, t in pa:
        near = [
            q for q in unmatched_b if q[0] == sid and q[1] == phase and abs(q[2] - t) < tolerance_s
        ]
        if near:
            q = min(near, key=lambda q: abs(q[2] - t))
            unmatched_b.remove(q)
            matched += 1
            shift = max(shift, abs(q[2] - t))
    return {
        "max_abs_prob": diff,
        "picks": len(pa),
        "picks_lost": len(pa) - matched,
        "picks_new": len(unmatched_b),
        "max_shift_s": shift,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=16)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--levers", default=",".join(LEVERS))
    p.add_argument("--out", default="benchmarks/results/inference_levers.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sine_seisbench.loader import load_weights

    model = load_weights(None).eval()
    stream, inventory = build_network(args.stations, args.minutes / 60.0)
    sample = normalised_sample(model, stream, min(16, args.stations))
    log: list[str] = []

    def run() -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = model.annotate(stream, inventory=inventory, inference_backend=BACKEND["name"])
        return time.perf_counter() - t0, out

    load_before = os.getloadavg()[0]
    base_out = model.annotate(stream, inventory=inventory, inference_backend="torch")  # warm-up
    rows = []
    for name in [n.strip() for n in args.levers.split(",") if n.strip()]:
        try:
            with lever(name, model, sample, log):
                run()  # warm-up
                times_lever, times_base = [], []
                for _ in range(args.repeats):
                    t, out = run()
                    times_lever.append(t)
                    # baseline between the lever's runs, without the patch
                    with contextlib.ExitStack() as stack:
                        stack.enter_context(_unpatched(model))
                        tb, _ = run()
                    times_base.append(tb)
        except Exception as e:  # noqa: BLE001 - a lever that does not run here is reported, not fatal
            rows.append(
                (name, None, None, {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})
            )
            print(f"{name}: failed: {e}", file=sys.stderr)
            continue
        diff = compare(model, base_out, out)
        lev, base = statistics.median(times_lever), statistics.median(times_base)
        rows.append((name, lev, base, diff))
        print(
            f"{name:15s} {lev:6.2f} s vs baseline {base:6.2f} s  speed-up {base / lev:5.2f}x  {diff}",
            flush=True,
        )
    load_after = os.getloadavg()[0]

    station_hours = args.stations * args.minutes / 60.0
    lines = [
        f"## Inference levers: SINE `annotate`, shipped default weights, {args.stations} stations x "
        f"{args.minutes:g} min, {args.threads} threads",
        "",
        f"- Command: `{' '.join([sys.executable, *sys.argv])}`",
        f"- torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"nproc {os.cpu_count()}; 1-min load average before / after: {load_before:.2f} / {load_after:.2f}",
        f"- {station_hours:g} station-hours; each lever timed {args.repeats}x alternating with the baseline "
        "(median); differences against the plain run's annotation and picks",
        *[f"- {line}" for line in log],
        "",
        "| Lever | Wall s | Baseline wall s | Speed-up | Max abs prob. diff | Picks (base) | Lost | New "
        "| Max pick shift s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, lev, base, diff in rows:
        if lev is None:
            lines.append(f"| {name} | failed: {diff['error']} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {lev:.2f} | {base:.2f} | {base / lev:.2f}x | {diff['max_abs_prob']:.2e} | "
            f"{diff['picks']} | {diff['picks_lost']} | {diff['picks_new']} | {diff['max_shift_s']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Inference levers\n\n" + text)
    print(f"written to {out}")


@contextlib.contextmanager
def _unpatched(model: Any) -> Iterator[None]:
    """The model without any lever for one baseline run (the backbone's own methods, ``torch.no_grad``)."""
    backbone = model.backbone
    saved = backbone.__dict__.pop("encode", None), backbone.__dict__.pop("decode", None)
    backend, BACKEND["name"] = BACKEND["name"], "torch"
    no_grad = torch.no_grad
    torch.no_grad = torch.autograd.grad_mode.no_grad  # type: ignore[misc]
    try:
        yield
    finally:
        torch.no_grad = no_grad  # type: ignore[misc]
        BACKEND["name"] = backend
        if saved[0] is not None:
            backbone.encode, backbone.decode = saved


if __name__ == "__main__":
    main()
