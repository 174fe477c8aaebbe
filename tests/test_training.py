from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import seisbench
import seisbench.data as sbd
import seisbench.generate as sbg
import torch

from sine_seisbench import SINE
from sine_seisbench.cli import main
from sine_seisbench.data.fixture import write_event_dataset
from sine_seisbench.data.pipeline import (
    PerStation,
    build_generator,
    event_ids,
    phase_dict,
    prepare_dataset,
)
from sine_seisbench.geometry import Coordinates, local_positions
from sine_seisbench.train import SINELoss, TrainConfig, forward_batch, train


@pytest.fixture(scope="session")
def scedc_fixture() -> Path:
    """A small dataset in the SCEDC column schema where seisbench.data.SCEDC() looks for it (no download)."""
    path = Path(seisbench.cache_data_root) / "scedc"
    if not (path / "metadata.csv").exists():
        write_event_dataset(path, n_events=14, n_stations=6, seed=0)
    return path


def small_model(**kw) -> SINE:
    torch.manual_seed(0)
    return SINE(max_stations=8, **kw)


def test_scedc_opens_offline_and_groups_by_event(scedc_fixture):
    ds = prepare_dataset(sbd.SCEDC(component_order="ZNE", sampling_rate=100, dimension_order="NCW"))
    assert len(ds) == 14 * 6
    assert len(ds.groups) == 14
    assert set(ds.metadata["split"]) == {"train", "dev", "test"}
    assert phase_dict(ds.metadata.columns) == {
        "trace_p_arrival_sample": "P",
        "trace_s_arrival_sample": "S",
    }


def test_sample_is_consistent_with_annotate_geometry(scedc_fixture):
    ds = prepare_dataset(
        sbd.WaveformDataset(
            scedc_fixture, component_order="ZNE", sampling_rate=100, dimension_order="NCW"
        )
    )
    gen = build_generator(ds.dev(), max_stations=8, samples=3001, training=False)
    sample = gen[0]
    assert sample["X"].shape == (8, 3, 3001) and sample["y"].shape == (8, 3, 3001)
    mask = sample["station_mask"]
    assert mask.sum() == 6 and not mask[6:].any()
    np.testing.assert_allclose(sample["y"].sum(1), 1.0, atol=1e-5)
    # Positions: the same local frame the model uses in annotate (centroid of the group's stations)
    group = ds.dev().get_group_samples(0)[1]
    coords = [
        Coordinates(a, b, c)
        for a, b, c in zip(
            group["station_latitude_deg"],
            group["station_longitude_deg"],
            group["station_elevation_m"],
            strict=True,
        )
    ]
    pos, _ = local_positions(coords)
    np.testing.assert_allclose(
        np.sort(sample["positions"][mask][:, 0]), np.sort(pos[:, 0]), atol=1e-3
    )
    assert sample["event_mask"].all()
    assert 0 < sample["event_target"][2] < 20 and 0.5 < sample["event_target"][3] < 4
    # The deterministic dev window places the first P at 32.5 % of the window
    first_p = min(
        sample["y"][i, 0].argmax() for i in np.flatnonzero(mask) if sample["y"][i, 0].max() > 0.5
    )
    assert abs(first_p - 0.325 * 3001) <= 2


def test_column_variants_missing_ids_and_splits(tmp_path):
    path = write_event_dataset(
        tmp_path / "variant",
        n_events=6,
        n_stations=4,
        p_column="trace_P_arrival_sample",
        s_column="trace_Sg_arrival_sample",
        with_split=False,
        with_source_id=False,
    )
    ds = prepare_dataset(
        sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    )
    assert phase_dict(ds.metadata.columns) == {
        "trace_P_arrival_sample": "P",
        "trace_Sg_arrival_sample": "S",
    }
    assert len(ds.groups) == 6  # events found from origin time and hypocentre
    assert set(ds.metadata["split"]) <= {"train", "dev", "test"}
    again = prepare_dataset(
        sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    )
    assert list(again.metadata["split"]) == list(ds.metadata["split"])  # deterministic
    sample = build_generator(ds, 8, 3001, training=False)[0]
    assert sample["y"][:, 0].max() > 0.9  # P labels from the variant column


def test_ceed_style_event_ids_and_noise_only_samples(tmp_path):
    meta = pd.DataFrame({"trace_name": ["ev1/CI.A", "ev1/CI.B", "ev2/CI.A"]})
    assert list(event_ids(meta)) == ["ev1", "ev1", "ev2"]
    with pytest.raises(ValueError, match="Cannot group traces by event"):
        event_ids(pd.DataFrame({"x": [1]}))
    path = write_event_dataset(tmp_path / "nop", n_events=3, n_stations=3)
    md = pd.read_csv(path / "metadata.csv")
    md["trace_p_arrival_sample"] = np.nan
    md["trace_s_arrival_sample"] = np.nan
    md.to_csv(path / "metadata.csv", index=False)
    ds = prepare_dataset(
        sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    )
    sample = build_generator(ds, 4, 3001, training=True)[0]
    np.testing.assert_allclose(sample["y"][:, 2], 1.0)  # all noise, no error


def test_training_augmentations_keep_shapes_and_masks(scedc_fixture):
    ds = prepare_dataset(
        sbd.WaveformDataset(
            scedc_fixture, component_order="ZNE", sampling_rate=100, dimension_order="NCW"
        )
    )
    np.random.seed(0)
    gen = build_generator(ds.train(), 4, 3001, training=True)  # 6 stations -> random subset of 4
    for i in range(len(gen)):
        s = gen[i]
        assert s["X"].shape == (4, 3, 3001)
        assert np.isfinite(s["X"]).all()
        assert s["station_mask"].sum() >= 1


def train_batch(path: Path, n: int = 4) -> dict[str, torch.Tensor]:
    """The first ``n`` training samples of the fixture dataset, collated as the training loop does."""
    ds = prepare_dataset(
        sbd.WaveformDataset(path, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
    )
    gen = build_generator(ds.train(), 8, 3001, training=False)
    batch = torch.utils.data.default_collate([gen[i] for i in range(n)])
    batch["station_mask"] = batch["station_mask"].bool()
    batch["event_mask"] = batch["event_mask"].bool()
    return batch


def test_loss_falls_on_a_learnable_batch(scedc_fixture):
    batch = train_batch(scedc_fixture)
    model = small_model().train()
    loss_fn = SINELoss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        out = loss_fn(forward_batch(model, batch), batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append((out["loss_picks"].item(), out["loss_event"].item()))
    assert losses[-1][0] < 0.7 * losses[0][0]
    assert losses[-1][1] < losses[0][1]


def test_uncertainty_weighting_learns_task_weights(scedc_fixture):
    """Kendall et al. (2018): the loss is ``exp(-s_i) L_i + s_i`` summed over picks and event, the learned
    ``s = log_vars`` get its gradient ``1 - exp(-s_i) L_i`` through the training loop's optimiser and move
    towards ``log L_i`` (where the weighted loss is smallest)."""
    loss_fn = SINELoss(uncertainty_weighting=True)
    assert [n for n, _ in loss_fn.named_parameters()] == ["log_vars"]
    batch = train_batch(scedc_fixture, n=2)
    model = small_model().train()
    # as sine train builds it: the network's and the loss's parameters in one optimiser
    opt = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=3e-3)
    start = loss_fn.log_vars.detach().clone()
    for _ in range(2):
        s = loss_fn.log_vars.detach().clone()
        net = forward_batch(model, batch)
        out = loss_fn(net, batch)
        task = torch.stack([out["loss_picks"], out["loss_event"]]).detach()
        assert float(out["loss_distill"]) == 0.0  # no teacher in this batch
        torch.testing.assert_close(out["loss"].detach(), (torch.exp(-s) * task + s).sum())
        opt.zero_grad()
        out["loss"].backward()
        grad = loss_fn.log_vars.grad
        assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all()
        torch.testing.assert_close(grad, 1 - torch.exp(-s) * task)
        opt.step()
    assert ((loss_fn.log_vars.detach() - start).abs() > 1e-3).all(), "log_vars did not move"

    # with the task losses held fixed, the optimiser drives s to log L (task weight exp(-s) = 1 / L)
    fixed = {k: v.detach() for k, v in net.items()}
    target = torch.log(task)
    with torch.no_grad():  # start well away from it, on both sides
        loss_fn.log_vars.copy_(target + torch.tensor([1.0, -1.0]))
    opt = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(fixed, batch)["loss"].backward()
        opt.step()
    torch.testing.assert_close(loss_fn.log_vars.detach(), target, atol=0.01, rtol=0)


def test_sine_train_cli_resume_load_and_evaluate(scedc_fixture, tmp_path, capsys):
    out = tmp_path / "weights" / "fixture"
    args = [
        "train",
        "--dataset",
        "SCEDC",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--max-stations",
        "8",
        "--seed",
        "3",
    ]
    assert main(args) == 0
    metrics = pd.read_csv(f"{out}.metrics.csv")
    assert list(metrics["epoch"]) == [0, 0] and list(metrics["split"]) == ["train", "dev"]
    for col in [
        "loss_picks",
        "loss_event",
        "p_residual_mae_s",
        "epicentral_error_median_km",
        "depth_mae_km",
        "magnitude_mae",
    ]:
        assert col in metrics.columns
    model = SINE.load(out)
    assert model.max_stations == 8
    first = {k: v.clone() for k, v in model.state_dict().items()}

    assert main(args[:6] + ["2"] + args[7:] + ["--resume"]) == 0
    metrics = pd.read_csv(f"{out}.metrics.csv")
    assert list(metrics["epoch"]) == [0, 0, 1, 1]
    state = torch.load(f"{out}.checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert any(not torch.equal(first[k], v) for k, v in state["model"].items())

    assert main(["evaluate", "--dataset", "SCEDC", "--weights", str(out), "--split", "test"]) == 0
    table = pd.read_csv(f"{out}.test.metrics.csv")
    assert table["samples"].iloc[0] > 0
    assert "p_residual_mae_s" in capsys.readouterr().out


def test_training_is_deterministic_under_a_seed(scedc_fixture, tmp_path):
    states = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        train(
            TrainConfig(
                dataset=str(scedc_fixture),
                out=str(out),
                epochs=1,
                batch_size=4,
                seed=7,
                max_stations=8,
            )
        )
        states.append(SINE.load(out).state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_real_noise_from_a_noise_dataset(scedc_fixture):
    ds = prepare_dataset(
        sbd.WaveformDataset(
            scedc_fixture, component_order="ZNE", sampling_rate=100, dimension_order="NCW"
        )
    )
    noise = sbd.WaveformDataset(
        scedc_fixture, component_order="ZNE", sampling_rate=100, dimension_order="NCW"
    )
    np.random.seed(1)
    with_noise = build_generator(ds.train(), 8, 3001, training=True, noise_dataset=noise)
    for i in range(len(with_noise)):
        s = with_noise[i]
        assert s["X"].shape == (8, 3, 3001) and np.isfinite(s["X"]).all()
    # The wrapper applies RealNoise station by station and leaves padded stations empty
    x = np.zeros((4, 3, 3001), dtype=np.float32)
    x[:2] = np.random.default_rng(0).normal(size=(2, 3, 3001))
    state = {"X": (x.copy(), {"station_code": np.array(["A", "B", "", ""])})}
    PerStation(sbg.RealNoise(noise, scale=(1, 1)))(state)
    out = state["X"][0]
    assert not np.allclose(out[:2], x[:2]) and not out[2:].any()
