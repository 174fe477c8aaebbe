"""Joint training of the event step's station weights: the arrival head on top of the shipped weights.

Adds an :class:`~sine_seisbench.nn.heads.ArrivalHead` to ``sine_pn_original`` and trains it with the location loss
(:func:`sine_seisbench.train.location_loss`: the Gaussian negative log-likelihood of the soft arrival times'
residuals at the true hypocentre, origin time removed) on the simulated events of
``benchmarks/build_training_data.py`` (many real geometries, real noise; the evaluation records are never read).
Everything else stays frozen, and the picks are made as the shipped weights make them (``graph_picks=False``), so
on real records the picks stay PhaseNet's and only the event step's weighting changes. Writes
``OUT/sine_pn_joint.{json,pt}`` and ``OUT/train_joint.json``.

Usage (the simulated set first, ~3 min)::

    python benchmarks/build_training_data.py --data ../shared/data --out DATA --sim-events 3000 --skip-real
    python benchmarks/train_joint.py --dataset DATA/sim --out OUT --minutes 25

``--graph-picks --trainable branch arrival_head`` lets the location loss flow into the pick curves through the
graph branch as well (not the shipped recipe: it moves PhaseNet's picks on real records).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="simulated SeisBench dataset (DATA/sim)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--init", default="sine_pn_original", help="weights to start from")
    parser.add_argument("--minutes", type=float, default=25.0, help="training minutes (default 25)")
    parser.add_argument("--epochs", type=int, default=6, help="most epochs (default 6)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--graph-picks", action="store_true", help="train with the graph residual on"
    )
    parser.add_argument(
        "--trainable",
        nargs="+",
        default=["arrival_head"],
        help="parts to train (default arrival_head)",
    )
    args = parser.parse_args(argv)

    from sine_seisbench.train import TrainConfig, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        dataset=args.dataset,
        out=str(out / "sine_pn_joint"),
        init=args.init,
        freeze_backbone=True,
        arrival_head=True,
        trainable=list(args.trainable),
        graph_picks=bool(args.graph_picks),
        location_weight=1.0,
        event_weight=0.2,
        distill_weight=0.0,
        epochs=args.epochs,
        patience=3,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        time_budget_s=args.minutes * 60.0,
    )
    started = time.perf_counter()
    best = train(config)
    report = {
        "args": vars(args),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": time.perf_counter() - started,
        "best_dev": best,
    }
    (out / "train_joint.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
