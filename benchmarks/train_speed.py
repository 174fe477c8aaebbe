"""Training throughput of SINE and data-pipeline throughput alone (a benchmark, not a test).

Writes a multi-station event dataset (``sine_seisbench.data.fixture``, SCEDC column schema) to a temporary
folder, then measures in one run:

- the generator alone (``build_generator(training=True)`` through a DataLoader) in samples (events) per second,
  for each requested worker count;
- training steps (forward, backward, optimiser) on the chosen device in samples per second, with the data
  already in memory, so the two rates can be compared: the pipeline should deliver at least 3x what the model
  consumes.

Usage::

    python benchmarks/train_speed.py --threads 2 --device cpu --workers 0,1 --out benchmarks/results/train_speed.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import seisbench.data as sbd
import torch
from torch.utils.data import DataLoader

from sine_seisbench import SINE
from sine_seisbench.data.fixture import write_event_dataset
from sine_seisbench.data.pipeline import build_generator, prepare_dataset
from sine_seisbench.train import SINELoss, _to_device, _worker_init, forward_batch, resolve_device


def pipeline_rate(generator, batch_size: int, workers: int, batches: int) -> float:
    loader = DataLoader(
        generator,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        worker_init_fn=_worker_init,
    )
    it = iter(loader)
    next(it)  # start-up (workers forking) not timed
    n = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch["X"].shape[0]
    return n / (time.perf_counter() - t0)


def training_rate(
    model: SINE, batch: dict, device: torch.device, steps: int, amp: bool
) -> tuple[float, float]:
    loss_fn = SINELoss().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    batch = _to_device(batch, device)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, enabled=amp):
            out = forward_batch(model, batch)
        loss = loss_fn(out, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = steps * batch["X"].shape[0] / (time.perf_counter() - t0)
    memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return rate, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=64)
    parser.add_argument(
        "--stations", type=int, default=16, help="stations per event in the dataset"
    )
    parser.add_argument("--max-stations", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", default="0,1", help="comma-separated DataLoader worker counts")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/train_speed.md")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_event_dataset(
            Path(tmp) / "ds", n_events=args.events, n_stations=args.stations, seed=0
        )
        ds = prepare_dataset(
            sbd.WaveformDataset(
                path, component_order="ZNE", sampling_rate=100, dimension_order="NCW"
            )
        )
        model = SINE(max_stations=args.max_stations).to(device)
        generator = build_generator(ds.train(), model.max_stations, model.in_samples, training=True)
        pipe = {
            int(w): pipeline_rate(generator, args.batch_size, int(w), args.batches)
            for w in args.workers.split(",")
        }
        batch = next(iter(DataLoader(generator, batch_size=args.batch_size)))
        amp = device.type == "cuda"
        train_rate, memory = training_rate(model, batch, device, args.steps, amp)

    lines = [
        "# Training throughput",
        "",
        f"- Command: `python benchmarks/train_speed.py --device {args.device} --threads {args.threads} "
        f"--workers {args.workers} --batch-size {args.batch_size}`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- Machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"device {device}{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}",
        f"- Data: fixture events with {args.stations} stations (3 x 3001 samples each), groups of "
        f"{args.max_stations}, batch {args.batch_size} events; mixed precision: {amp}",
        "",
        "| what | samples (events) / s |",
        "|---|---:|",
        f"| training step on {device} | {train_rate:.2f} |",
    ]
    for w, rate in pipe.items():
        lines.append(
            f"| data pipeline, {w} worker(s) | {rate:.2f} ({rate / train_rate:.1f}x training) |"
        )
    if device.type == "cuda":
        lines.append(f"\nPeak GPU memory during training: {memory:.0f} MiB")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
