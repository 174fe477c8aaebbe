"""Training that keeps the picker's real-data skill: label sources, distillation, a frozen per-station path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import seisbench.data as sbd
import seisbench.models as sbm
import torch

from sine_seisbench import SINE
from sine_seisbench.data.fixture import write_event_dataset
from sine_seisbench.data.pipeline import EVENT_ID, label_weights, prepare_dataset
from sine_seisbench.train import SINELoss, TrainConfig, train


def test_label_weights_follow_the_label_source():
    nan = np.nan
    sim = {"trace_p_arrival_sample": np.array([100.0, nan, 300.0])}
    assert label_weights(sim, 3)[0].tolist() == [1, 1, 1]  # no column: a labelled dataset
    assert label_weights(sim, 3)[1].tolist() == [0, 0, 0]
    pseudo = {
        "trace_label_source": np.array(["pseudo"] * 3, dtype=object),
        "trace_p_arrival_sample": np.array([100.0, nan, nan]),
        "trace_s_arrival_sample": np.array([nan, nan, 500.0]),
    }
    pick, distill = label_weights(pseudo, 3)
    assert pick.tolist() == [1, 0, 1]  # the station without a confirmed pick is not taught "noise"
    assert distill.tolist() == [1, 1, 1]
    none = {"trace_label_source": "none", "trace_p_arrival_sample": np.full(3, nan)}
    assert [w.tolist() for w in label_weights(none, 3)] == [[0, 0, 0], [1, 1, 1]]
    simulated = {"trace_label_source": np.array(["simulated"] * 2, dtype=object)}
    assert [w.tolist() for w in label_weights(simulated, 2)] == [[1, 1], [0, 0]]


def test_distillation_term_is_zero_for_the_teacher_and_masked_elsewhere():
    torch.manual_seed(0)
    b, s, t = 2, 3, 50
    logits = torch.randn(b, s, 3, t)
    batch = {
        "station_mask": torch.ones(b, s, dtype=torch.bool),
        "y": torch.softmax(torch.randn(b, s, 3, t), 2),
        "event_mask": torch.zeros(b, 4, dtype=torch.bool),
        "event_target": torch.zeros(b, 4),
        "pick_weight": torch.zeros(b, s),
        "distill": torch.ones(b, s),
    }
    out = {"picks": logits, "event_mean": torch.zeros(b, 4), "event_std": torch.ones(b, 4)}
    loss = SINELoss(distill_weight=2.0)
    same = loss({**out, "teacher_picks": logits}, batch)
    assert same["loss_distill"].abs() < 1e-6 and same["loss_picks"] == 0  # no labelled station
    other = loss({**out, "teacher_picks": logits.flip(-1)}, batch)
    assert other["loss_distill"] > 0.05
    assert torch.isclose(other["loss"], 2.0 * other["loss_distill"])
    masked = loss(
        {**out, "teacher_picks": logits.flip(-1)}, {**batch, "distill": torch.zeros(b, s)}
    )
    assert masked["loss_distill"] == 0


@pytest.fixture
def mixed(tmp_path) -> tuple[Path, Path]:
    """A labelled ("simulated") dataset and a "real" one whose events are half 'none', half 'pseudo'."""
    sim = write_event_dataset(tmp_path / "sim", n_events=8, n_stations=5, seed=1)
    real = write_event_dataset(tmp_path / "real", n_events=8, n_stations=5, seed=2)
    meta = pd.read_csv(real / "metadata.csv")
    first = meta["source_id"].isin(sorted(meta["source_id"].unique())[:4])
    meta["trace_label_source"] = np.where(first, "none", "pseudo")
    meta.loc[first, ["trace_p_arrival_sample", "trace_s_arrival_sample"]] = np.nan
    meta.to_csv(real / "metadata.csv", index=False)
    return sim, real


def test_a_multi_dataset_keeps_each_members_events_apart(mixed):
    sim, real = mixed
    members = [
        sbd.WaveformDataset(p, component_order="ZNE", sampling_rate=100, dimension_order="NCW")
        for p in mixed
    ]
    both = prepare_dataset(sbd.MultiWaveformDataset(members))
    ids = both.metadata[EVENT_ID]
    assert ids.str.startswith("0:").sum() == 40 and ids.str.startswith("1:").sum() == 40
    assert len(both.groups) == 16  # the two fixtures reuse source ids: prefixes keep them apart
    assert len(both.train().groups) + len(both.dev().groups) + len(both.test().groups) == 16


def test_frozen_backbone_training_keeps_the_picker_and_trains_the_branch(
    mixed, tmp_path, monkeypatch
):
    sim, real = mixed
    distilled = []  # per training/dev batch: stations whose picks were distilled from the teacher's
    forward = SINELoss.forward

    def spy(self, out, batch):
        if "teacher_picks" in out and "distill" in batch:
            distilled.append(float((batch["distill"] * batch["station_mask"]).sum()))
        return forward(self, out, batch)

    monkeypatch.setattr(SINELoss, "forward", spy)
    torch.manual_seed(0)
    picker = sbm.PhaseNet()  # random weights stand in for a published picker
    start = SINE.from_picker(picker, max_stations=8)
    start.save(tmp_path / "start")
    train(
        TrainConfig(
            dataset=str(sim),
            real_dataset=str(real),
            out=str(tmp_path / "trained"),
            init=str(tmp_path / "start"),
            freeze_backbone=True,
            epochs=1,
            batch_size=4,
            seed=0,
        )
    )
    trained = SINE.load(tmp_path / "trained")
    before, after = start.state_dict(), trained.state_dict()
    # the per-station path, BatchNorm statistics included, is still the picker's
    for key, value in before.items():
        if key.startswith("backbone."):
            assert torch.equal(value, after[key]), key
    assert not torch.equal(before["branch.proj_out.weight"], after["branch.proj_out.weight"])
    assert not torch.equal(before["event_head.mlp.2.weight"], after["event_head.mlp.2.weight"])
    # the unlabelled real records were distilled from the teacher (the picker's own picks)
    assert sum(distilled) > 0
    metrics = pd.read_csv(tmp_path / "trained.metrics.csv")
    # one epoch moves the student's picks only slightly from the teacher's: KL near zero (second order in the
    # small residual, so float rounding can make it either sign, about 1e-10)
    assert np.isfinite(metrics["loss_distill"]).all()
    assert (metrics["loss_distill"].abs() < 1e-3).all()
