"""Builds the training data and trains SINE's default weights (``sine_pn_original``) in one command.

One prepared run for a lent GPU machine (simulation on its CPUs, training on its GPU, within about 10 minutes) with
a CPU fallback schedule::

    python benchmarks/train_default.py --data ../shared/data --out runs/default            # GPU if present
    python benchmarks/train_default.py --data ../shared/data --out runs/default --device cpu --minutes 40

Steps: (1) ``benchmarks/build_training_data.py`` writes ``OUT/data/sim`` (simulated events on random subsets of
every real station list, real noise) and ``OUT/data/real`` (real windows outside the evaluation records, with
PhaseNet's picks confirmed by >= 3 located stations as pseudo-labels and the rest for distillation); skipped when
``OUT/data`` already holds both. (2) ``sine train`` from PhaseNet 'original' (``--picker original``) with the
per-station path frozen (it stays the published picker and is the distillation teacher), the graph branch and
the event head trained in two stages: 60 % of ``--minutes`` with distillation weight 5, then 40 % from the best
weights of stage 1 with distillation weight 20 and half the learning rate. (3) ``OUT/sine_pn_original.{json,pt}``
(default ``graph_picks=False``: see ``weights/README.md``) and ``OUT/train_report.json`` (hardware, times, dev
metrics, the equivalent ``sine train`` commands). Copy the two weight files into ``weights/`` to ship them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def schedule(device: str, minutes: float | None, cpus: int) -> dict:
    """Batch size, workers, learning rate and training minutes for the device (GPU: one 10-minute lent run)."""
    if device.startswith("cuda"):
        return dict(
            batch_size=32, workers=min(8, max(1, cpus - 2)), lr=2e-3, minutes=minutes or 5.0
        )
    return dict(batch_size=8, workers=0, lr=1e-3, minutes=minutes or 65.0)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--out", required=True, help="output folder (data/, weights, report)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--minutes", type=float, help="training minutes (default: GPU 5, CPU 65)")
    parser.add_argument(
        "--sim-events", type=int, default=3000, help="simulated events (default 3000)"
    )
    parser.add_argument("--epochs", type=int, default=12, help="most epochs (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    report: dict = {"args": vars(args), "python": platform.python_version()}
    t0 = time.perf_counter()
    if not ((data / "sim" / "metadata.csv").exists() and (data / "real" / "metadata.csv").exists()):
        sys.path.insert(0, str(HERE))
        import build_training_data

        build_training_data.main(
            [
                "--data",
                args.data,
                "--out",
                str(data),
                "--sim-events",
                str(args.sim_events),
                "--seed",
                str(args.seed),
                "--overwrite",
            ]
        )
    report["seconds_data"] = round(time.perf_counter() - t0, 1)

    import torch

    from sine_seisbench.train import TrainConfig, resolve_device, train

    device = str(resolve_device(args.device))
    cpus = os.cpu_count() or 1
    plan = schedule(device, args.minutes, cpus)
    report["hardware"] = {
        "device": torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "cpus": cpus,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    report["schedule"] = plan
    stages = [  # (name, init, distillation weight, learning rate factor, share of the minutes, seed)
        ("stage1", None, 5.0, 1.0, 0.6, args.seed),
        ("stage2", "stage1", 20.0, 0.5, 0.4, args.seed + 1),
    ]
    report["stages"] = {}
    commands = []
    for name, init, distill, lr_factor, share, seed in stages:
        config = TrainConfig(
            dataset=str(data / "sim"),
            real_dataset=str(data / "real"),
            out=str(out / name),
            init=str(out / init) if init else None,
            picker=None if init else "original",
            freeze_backbone=True,
            epochs=args.epochs,
            batch_size=plan["batch_size"],
            lr=plan["lr"] * lr_factor,
            device=device,
            workers=plan["workers"],
            seed=seed,
            patience=4,
            event_weight=0.2,
            distill_weight=distill,
            time_budget_s=plan["minutes"] * share * 60,
        )
        t1 = time.perf_counter()
        best = train(config)
        report["stages"][name] = {"seconds": round(time.perf_counter() - t1, 1), "best_dev": best}
        start = f"--init {out / init}" if init else "--picker original"
        commands.append(
            f"sine train --dataset {data / 'sim'} --real-dataset {data / 'real'} --out {out / name} {start} "
            f"--freeze-backbone --epochs {args.epochs} --patience 4 --batch-size {plan['batch_size']} "
            f"--lr {config.lr:g} --event-weight 0.2 --distill-weight {distill:g} --seed {seed} "
            f"--time-budget {plan['minutes'] * share:g} --device {device} --workers {plan['workers']}"
        )
    from sine_seisbench import SINE

    model = SINE.load(out / "stage2")
    model.default_args["graph_picks"] = (
        False  # real-data picks stay the published picker's (model card)
    )
    model.save(
        out / "sine_pn_original",
        weights_docstring="SINE on PhaseNet 'original' (MIT, weights/LICENSE.PhaseNet), trained with "
        "benchmarks/train_default.py: " + " && ".join(commands),
    )
    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    report["commands"] = commands
    (out / "train_report.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
