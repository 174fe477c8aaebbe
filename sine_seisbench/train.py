"""Training, fine-tuning and evaluation of SINE on SeisBench datasets."""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import seisbench.data as sbd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .data.pipeline import build_generator, prepare_dataset
from .loader import load_weights
from .model import SINE, n_station_features
from .nn.heads import ArrivalHead
from .progress import progress

#: Named SeisBench datasets accepted by ``--dataset`` (any other value is a path to a SeisBench dataset).
DATASETS = {
    "scedc": "SCEDC",
    "instancecounts": "InstanceCounts",
    "ceed": "CEED",
    "ethz": "ETHZ",
    "stead": "STEAD",
}

#: Probability a P curve must reach to count as a pick in the metrics (SINE's default P_threshold)
PICK_THRESHOLD = 0.3

METRIC_COLUMNS = [
    "epoch",
    "split",
    "loss",
    "loss_picks",
    "loss_event",
    "loss_distill",
    "loss_location",
    "p_residual_mae_s",
    "p_picked_fraction",
    "p_within_0.1s_fraction",
    "p_residual_mae_picked_s",
    "s_residual_mae_s",
    "epicentral_error_median_km",
    "depth_mae_km",
    "magnitude_mae",
    "samples",
    "seconds",
]


@dataclass
class TrainConfig:
    """Hyper-parameters of ``sine train``."""

    dataset: str
    out: str
    init: str | None = None
    picker: str | None = None
    freeze_backbone: bool = False
    distill_weight: float = 1.0
    real_dataset: str | None = None
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    resume: bool = False
    patience: int = 5
    pick_weight: float = 1.0
    event_weight: float = 0.1
    uncertainty_weighting: bool = False
    max_stations: int = 16
    noise_dataset: str | None = None
    max_steps_per_epoch: int | None = None
    #: Weight of the location loss (:func:`location_loss`): the event step's travel-time misfit at the true
    #: hypocentre, through the pick curves and the arrival head (0: off)
    location_weight: float = 0.0
    #: Add an arrival head (per-station P/S timing errors for the event step) to a model that has none
    arrival_head: bool = False
    #: Parameter-name prefixes to train (e.g. ``["arrival_head"]``); the others stay frozen. None: all but a
    #: frozen backbone
    trainable: list[str] | None = None
    #: Whether training passes the graph branch's residual into the picks (None: yes, the historical recipe;
    #: set it as the weights' ``graph_picks`` default is set so that losses see the picks inference makes)
    graph_picks: bool | None = None
    #: Wall-clock budget (s) of the training steps: once spent, the current epoch ends early, is evaluated on
    #: the dev split, and training stops (a schedule that fits lent GPU time or a CPU afternoon alike)
    time_budget_s: float | None = None
    extra: dict = field(default_factory=dict)


def open_dataset(name_or_path: str, sampling_rate: float = 100, **kwargs) -> sbd.WaveformDataset:
    """A SeisBench dataset by name (``SCEDC``, ``InstanceCounts``, ``CEED``, ``ETHZ``, ``STEAD``) or path."""
    kwargs.setdefault("component_order", "ZNE")
    kwargs.setdefault("dimension_order", "NCW")
    kwargs.setdefault("sampling_rate", sampling_rate)
    cls_name = DATASETS.get(name_or_path.lower())
    if cls_name is not None:
        return getattr(sbd, cls_name)(**kwargs)
    path = Path(name_or_path)
    if not (path / "metadata.csv").exists() and not list(path.glob("metadata*.csv")):
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a known dataset ({', '.join(DATASETS.values())}) nor a folder with a "
            "SeisBench metadata.csv"
        )
    return sbd.WaveformDataset(path, **kwargs)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def location_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    rate: float,
    arrival_sigma: torch.Tensor | None = None,
    half_window_s: float = 0.4,
    soft_floor: float = 0.1,
    model_error_s: float = 0.05,
) -> torch.Tensor:
    """The event step's travel-time misfit at the true hypocentre, differentiable in the curves and the arrival
    head: the Gaussian negative log-likelihood of the soft arrival times' residuals.

    As in :func:`sine_seisbench.pipeline.locate.soft_arrivals`, a station's soft arrival is the p²-weighted mean time of its
    P (or S) curve within ``half_window_s`` of the arrival, here the true one (the label's peak: on simulated
    events the arrival at the true hypocentre and origin time); its spread is the p²-weighted standard deviation,
    widened by the arrival head's timing error and ``model_error_s`` in quadrature, as in the fit. The origin
    time is a free parameter of the fit, so the residuals' weighted mean over each event is removed. Arrivals
    whose curve stays below ``soft_floor`` would not enter the fit and are left out.

    :param logits: ``(B, S, phases, T)`` pick logits (P and S first).
    :param y: ``(B, S, phases, T)`` probabilistic labels.
    :param weight: ``(B, S)`` stations whose labels are true (1) or not used (0).
    :param arrival_sigma: ``(B, S, 2)`` the arrival head's timing errors (s), or None.
    :return: The mean negative log-likelihood over the arrivals used (0 without any).
    """
    p = torch.softmax(logits.float(), dim=2)[:, :, :2]
    peak, true_idx = y[:, :, :2].max(-1)  # (B, S, 2)
    n = p.shape[-1]
    half = int(round(half_window_s * rate))
    offsets = torch.arange(-half, half + 1, device=p.device)
    idx = true_idx[..., None] + offsets
    inside = (idx >= 0) & (idx < n)
    seg = p.gather(-1, idx.clamp(0, n - 1)) * inside
    w2 = seg**2
    mass = w2.sum(-1).clamp(min=1e-12)
    t = offsets.to(p.dtype) / rate
    mean = (w2 * t).sum(-1) / mass  # soft arrival minus the true one (s)
    spread = ((w2 * (t - mean[..., None]) ** 2).sum(-1) / mass).clamp(min=(1.0 / rate) ** 2)
    var = spread + model_error_s**2
    if arrival_sigma is not None:
        var = var + torch.nan_to_num(arrival_sigma.float(), nan=0.0) ** 2
    used = (peak > 0.5) & (weight[..., None] > 0) & (seg.amax(-1) >= soft_floor)
    inv = used / var
    common = (inv * mean).sum((1, 2), keepdim=True) / inv.sum((1, 2), keepdim=True).clamp(min=1e-12)
    residual = mean - common
    nll = 0.5 * residual**2 / var + 0.5 * torch.log(var)
    # an event needs two arrivals for a residual that does not vanish with the origin time
    used = used & (used.sum((1, 2), keepdim=True) >= 2)
    return (nll * used).sum() / used.sum().clamp(min=1)


class SINELoss(nn.Module):
    """Pick cross-entropy plus Gaussian negative log-likelihood of the event parameters.

    With ``uncertainty_weighting`` the two terms are weighted by learned homoscedastic uncertainties
    (Kendall et al., 2018): ``exp(-s_i) L_i + s_i``; otherwise by the fixed weights.
    """

    def __init__(
        self,
        pick_weight: float = 1.0,
        event_weight: float = 0.1,
        uncertainty_weighting: bool = False,
        distill_weight: float = 1.0,
        location_weight: float = 0.0,
        sampling_rate: float = 100.0,
    ):
        super().__init__()
        self.location_weight = location_weight
        self.sampling_rate = sampling_rate
        self.pick_weight = pick_weight
        self.event_weight = event_weight
        self.distill_weight = distill_weight
        self.log_vars = nn.Parameter(torch.zeros(2)) if uncertainty_weighting else None

    def forward(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        mask = batch["station_mask"]
        log_p = F.log_softmax(out["picks"].float(), dim=2)
        ce = -(batch["y"] * log_p).sum(2).mean(-1)  # (B, S)
        weight = mask * batch["pick_weight"] if "pick_weight" in batch else mask.float()
        pick_loss = (ce * weight).sum() / weight.sum().clamp(min=1)
        distill_loss = log_p.new_zeros(())
        if "teacher_picks" in out and "distill" in batch:
            # KL(teacher || student) per station, summed over classes and averaged over samples
            t_log = F.log_softmax(out["teacher_picks"].float(), dim=2)
            kl = (t_log.exp() * (t_log - log_p)).sum(2).mean(-1)
            dw = mask * batch["distill"]
            distill_loss = (kl * dw).sum() / dw.sum().clamp(min=1)

        ev_mask = batch["event_mask"] & mask.any(1, keepdim=True)
        var = out["event_std"].float() ** 2
        nll = F.gaussian_nll_loss(
            out["event_mean"].float(), batch["event_target"], var, full=True, reduction="none"
        )
        event_loss = (nll * ev_mask).sum() / ev_mask.sum().clamp(min=1)

        if self.log_vars is not None:
            total = (
                torch.exp(-self.log_vars[0]) * pick_loss
                + self.log_vars[0]
                + torch.exp(-self.log_vars[1]) * event_loss
                + self.log_vars[1]
            )
        else:
            total = self.pick_weight * pick_loss + self.event_weight * event_loss
        total = total + self.distill_weight * distill_loss
        result = {
            "loss": total,
            "loss_picks": pick_loss,
            "loss_event": event_loss,
            "loss_distill": distill_loss,
        }
        if self.location_weight > 0:
            # stations whose labels are true: simulated events and confirmed pseudo-labels
            weight = mask * batch["pick_weight"] if "pick_weight" in batch else mask.float()
            loc = location_loss(
                out["picks"], batch["y"], weight, self.sampling_rate, out.get("arrival_sigma")
            )
            result["loss"] = total + self.location_weight * loc
            result["loss_location"] = loc
        return result


def forward_batch(
    model: SINE, batch: dict[str, torch.Tensor], graph_picks: bool = True
) -> dict[str, torch.Tensor]:
    """Runs the model on a generator batch, normalising exactly as ``annotate`` does; with the teacher's picks
    (the per-station path without the graph residual) where the batch holds windows to distil."""
    x, log_scale = model.annotate_batch_pre(batch["X"], {})
    return model(
        x,
        positions=batch["positions"],
        station_mask=batch["station_mask"],
        amplitude=log_scale,
        # one amplitude convention: the flag inference sets from responses, here from the dataset's
        # trace_calibrated column; the model uses it only if built with calibrated_amplitudes=True
        calibrated=batch.get("calibrated", torch.zeros_like(batch["station_mask"])),
        logits=True,
        teacher=bool("distill" in batch and batch["distill"].any()),
        graph_picks=graph_picks,
    )


class MetricAccumulator:
    """Collects dev/test metrics: losses, P/S residuals, epicentral, depth and magnitude errors."""

    def __init__(self, sampling_rate: float) -> None:
        self.sampling_rate = sampling_rate
        self.losses: dict[str, list[float]] = {}
        self.residuals: dict[str, list[np.ndarray]] = {"P": [], "S": []}
        self.p_picked: list[np.ndarray] = []  # per labelled P: (picked at threshold, residual s)
        self.epi: list[np.ndarray] = []
        self.depth: list[np.ndarray] = []
        self.mag: list[np.ndarray] = []
        self.samples = 0

    def update(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], losses: dict
    ) -> None:
        n = batch["X"].shape[0]
        self.samples += n
        for k, v in losses.items():
            self.losses.setdefault(k, []).append(float(v) * n)
        mask = batch["station_mask"].cpu().numpy()
        pred = torch.softmax(out["picks"].float(), dim=2).cpu().numpy()  # logits -> probabilities
        y = batch["y"].cpu().numpy()
        for i, phase in enumerate("PS"):
            has = mask & (y[:, :, i].max(-1) > 0.5)  # a labelled arrival inside the window
            true_idx = y[:, :, i].argmax(-1)
            pred_idx = pred[:, :, i].argmax(-1)
            residual = ((pred_idx - true_idx) / self.sampling_rate)[has]
            self.residuals[phase].append(residual)
            if phase == "P":
                picked = pred[:, :, 0].max(-1)[has] >= PICK_THRESHOLD
                self.p_picked.append(np.stack([picked, residual], axis=-1))
        em = batch["event_mask"].cpu().numpy() & mask.any(1, keepdims=True)
        mean = out["event_mean"].float().cpu().numpy()
        target = batch["event_target"].cpu().numpy()
        ok = em[:, 0] & em[:, 1]
        self.epi.append(np.hypot(mean[ok, 0] - target[ok, 0], mean[ok, 1] - target[ok, 1]))
        self.depth.append(np.abs(mean[em[:, 2], 2] - target[em[:, 2], 2]))
        self.mag.append(np.abs(mean[em[:, 3], 3] - target[em[:, 3], 3]))

    def result(self) -> dict[str, float]:
        def mean_of(parts, fn=np.mean):
            values = np.concatenate(parts) if parts else np.array([])
            return float(fn(values)) if values.size else float("nan")

        out = {k: sum(v) / max(self.samples, 1) for k, v in self.losses.items()}
        out["p_residual_mae_s"] = mean_of([np.abs(r) for r in self.residuals["P"]])
        out["s_residual_mae_s"] = mean_of([np.abs(r) for r in self.residuals["S"]])
        picks = np.concatenate(self.p_picked) if self.p_picked else np.zeros((0, 2))
        picked, res = picks[:, 0].astype(bool), picks[:, 1]
        out["p_picked_fraction"] = float(picked.mean()) if picks.size else float("nan")
        out["p_within_0.1s_fraction"] = (
            float((picked & (np.abs(res) <= 0.1)).mean()) if picks.size else float("nan")
        )
        out["p_residual_mae_picked_s"] = (
            float(np.abs(res[picked]).mean()) if picked.any() else float("nan")
        )
        out["epicentral_error_median_km"] = mean_of(self.epi, np.median)
        out["depth_mae_km"] = mean_of(self.depth)
        out["magnitude_mae"] = mean_of(self.mag)
        out["samples"] = self.samples
        return out


def _to_device(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()}
    out["station_mask"] = out["station_mask"].bool()
    out["event_mask"] = out["event_mask"].bool()
    return out


def evaluate_model(
    model: SINE,
    loader: DataLoader,
    loss_fn: SINELoss,
    device: torch.device,
    desc: str = "evaluate",
    graph_picks: bool = True,
) -> dict[str, float]:
    """Metrics of ``model`` over a loader (no gradients)."""
    model.eval()
    acc = MetricAccumulator(model.sampling_rate)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in progress(loader, desc=desc, unit="batch", leave=False):
            batch = _to_device(batch, device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out = forward_batch(model, batch, graph_picks)
            losses = loss_fn(out, batch)
            acc.update(out, batch, {k: v.item() for k, v in losses.items()})
    result = acc.result()
    result["seconds"] = time.perf_counter() - start
    return result


def _loader(generator, batch_size: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        generator,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        worker_init_fn=_worker_init,
        generator=g,
        persistent_workers=workers > 0,
    )


def initial_model(config: TrainConfig) -> SINE:
    """The model training starts from: ``--init`` weights, a published PhaseNet (``--picker NAME``, copied with
    :meth:`SINE.from_picker`), or an untrained SINE."""
    if config.init and config.picker:
        raise ValueError("give either --init or --picker, not both")
    if config.init:
        return _load_init(config.init)
    if config.picker:
        import seisbench.models as sbm

        picker = sbm.PhaseNet.from_pretrained(config.picker)
        return SINE.from_picker(picker, config.picker, max_stations=config.max_stations)
    return SINE(max_stations=config.max_stations)


def _load_init(init: str, option: str = "--init") -> SINE:
    """``--init``/``--weights`` through the one loader (:func:`sine_seisbench.loader.load_weights`): shipped names
    are read from the package (nothing is written to SeisBench's cache)."""
    return load_weights(init, option)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.as_tensor(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))


def train(config: TrainConfig) -> dict[str, float]:
    """Trains or fine-tunes SINE; writes ``OUT.json``/``OUT.pt`` (best dev loss), ``OUT.metrics.csv`` and
    ``OUT.checkpoint.pt``. Returns the best dev metrics."""
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out.with_name(out.name + ".checkpoint.pt")
    metrics_path = out.with_name(out.name + ".metrics.csv")
    device = resolve_device(config.device)
    seed_everything(config.seed)

    model = initial_model(config)
    if config.arrival_head and model.arrival_head is None:
        model.arrival_head = ArrivalHead(
            model.backbone.bottleneck_channels + model.branch.out_features,
            n_station_features(model.in_channels),
        )
    model.to(device)
    if config.freeze_backbone:
        # the picker's weights stay as published; it is also the distillation teacher
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    if config.trainable is not None:
        prefixes = tuple(config.trainable)
        names = [name for name, _ in model.named_parameters()]
        unknown = [x for x in prefixes if not any(n.startswith(x) for n in names)]
        if unknown:
            raise ValueError(
                f"trainable: no parameter starts with {', '.join(unknown)}; the model's parts are "
                f"{', '.join(sorted({n.split('.')[0] for n in names}))}"
            )
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefixes))
    graph_picks = True if config.graph_picks is None else bool(config.graph_picks)
    dataset = open_dataset(config.dataset)
    if config.real_dataset:
        dataset = sbd.MultiWaveformDataset([dataset, open_dataset(config.real_dataset)])
    dataset = prepare_dataset(dataset)
    noise = open_dataset(config.noise_dataset) if config.noise_dataset else None
    train_gen = build_generator(dataset.train(), model.max_stations, model.in_samples, True, noise)
    dev_gen = build_generator(dataset.dev(), model.max_stations, model.in_samples, False)
    if len(train_gen) == 0 or len(dev_gen) == 0:
        raise ValueError(
            f"Dataset {config.dataset!r} has {len(train_gen)} training and {len(dev_gen)} dev events; "
            "both splits need at least one event."
        )
    train_loader = _loader(train_gen, config.batch_size, True, config.workers, config.seed)
    dev_loader = _loader(dev_gen, config.batch_size, False, config.workers, config.seed)

    loss_fn = SINELoss(
        config.pick_weight,
        config.event_weight,
        config.uncertainty_weighting,
        config.distill_weight,
        config.location_weight,
        model.sampling_rate,
    ).to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad] + list(loss_fn.parameters()),
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    start_epoch, best, stale = 0, math.inf, 0
    best_metrics: dict[str, float] = {}
    if config.resume:
        if not checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, stale = state["epoch"] + 1, state["best"], state["stale"]
        best_metrics = state["best_metrics"]
        _set_rng_state(state["rng"])
    elif metrics_path.exists():
        metrics_path.unlink()

    started = time.perf_counter()
    out_of_time = False
    for epoch in range(start_epoch, config.epochs):
        model.train()
        if config.freeze_backbone:
            model.backbone.eval()  # BatchNorm keeps the picker's statistics
        if (
            config.trainable is not None
        ):  # frozen parts keep their BatchNorm statistics and no dropout
            for name, module in model.named_children():
                if not name.startswith(tuple(config.trainable)):
                    module.eval()
        acc = MetricAccumulator(model.sampling_rate)
        t0 = time.perf_counter()
        bar = progress(train_loader, desc=f"epoch {epoch}", unit="batch", leave=False)
        for step, batch in enumerate(bar):
            if config.max_steps_per_epoch is not None and step >= config.max_steps_per_epoch:
                break
            if (
                config.time_budget_s is not None
                and time.perf_counter() - started > config.time_budget_s
            ):
                out_of_time = True
                break
            batch = _to_device(batch, device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out_batch = forward_batch(model, batch, graph_picks)
            losses = loss_fn(out_batch, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(optimizer)
            scaler.update()
            acc.update(
                {k: v.detach() for k, v in out_batch.items()},
                batch,
                {k: v.item() for k, v in losses.items()},
            )
            bar.set_postfix(loss=f"{losses['loss'].item():.3f}")
        train_metrics = acc.result()
        train_metrics["seconds"] = time.perf_counter() - t0
        dev_metrics = evaluate_model(
            model, dev_loader, loss_fn, device, desc=f"dev {epoch}", graph_picks=graph_picks
        )
        _append_metrics(metrics_path, epoch, "train", train_metrics)
        _append_metrics(metrics_path, epoch, "dev", dev_metrics)
        print(_format_metrics(f"epoch {epoch} dev", dev_metrics))

        if dev_metrics["loss"] < best:
            best, stale, best_metrics = dev_metrics["loss"], 0, dev_metrics
            model.save(out, weights_docstring=_docstring(config, epoch, dev_metrics))
        else:
            stale += 1
        torch.save(
            {
                "model": model.state_dict(),
                "loss": loss_fn.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best": best,
                "stale": stale,
                "best_metrics": best_metrics,
                "rng": _rng_state(),
                "config": {k: v for k, v in asdict(config).items() if k != "extra"},
            },
            checkpoint_path,
        )
        if stale >= config.patience:
            print(f"early stopping: no dev improvement for {stale} epochs")
            break
        if out_of_time:
            print(
                f"time budget of {config.time_budget_s:.0f} s spent: stopping after epoch {epoch}"
            )
            break
    return best_metrics


def _docstring(config: TrainConfig, epoch: int, metrics: dict) -> str:
    return (
        f"SINE trained with `sine train --dataset {config.dataset}` (epoch {epoch}, seed {config.seed}, "
        f"lr {config.lr}, batch size {config.batch_size}). Dev: "
        + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    )


def _append_metrics(path: Path, epoch: int, split: str, metrics: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({"epoch": epoch, "split": split, **metrics})


def _format_metrics(title: str, metrics: dict) -> str:
    rows = [f"{title}:"] + [
        f"  {k:<28} {v:.4f}" if isinstance(v, float) else f"  {k:<28} {v}"
        for k, v in metrics.items()
    ]
    return "\n".join(rows)


def evaluate(
    dataset: str,
    weights: str,
    split: str = "test",
    batch_size: int = 8,
    device: str = "auto",
    workers: int = 0,
) -> dict[str, float]:
    """Metrics of saved weights on a dataset split (``sine evaluate``)."""
    dev = resolve_device(device)
    model = _load_init(weights, "--weights").to(dev)
    data = prepare_dataset(open_dataset(dataset))
    subset = getattr(data, split)()
    generator = build_generator(subset, model.max_stations, model.in_samples, False)
    if len(generator) == 0:
        raise ValueError(f"Split {split!r} of {dataset!r} holds no events.")
    loader = _loader(generator, batch_size, False, workers, 0)
    return evaluate_model(model, loader, SINELoss().to(dev), dev, desc=f"{split}")
