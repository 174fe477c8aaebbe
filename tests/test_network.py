from __future__ import annotations

import pytest
import torch

from sine_seisbench import SINE
from sine_seisbench.geometry import build_station_graph
from sine_seisbench.nn.disentangle import DisentangledGraphLayer, NeighbourhoodRouting


def small_model(trained_branch: bool = True, **kw) -> SINE:
    """A small SINE; ``trained_branch`` gives the graph branch's output projection (zero at construction)
    random weights, as training would."""
    torch.manual_seed(0)
    model = SINE(in_samples=1001, max_stations=8, **kw)
    # BatchNorm statistics of real activations (as a trained picker has): one batch in train mode
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.momentum = None
    with torch.no_grad():
        model.train()(*inputs(seed=5)[:1], positions=inputs(seed=5)[1])
    model.eval()
    if trained_branch:
        with torch.no_grad():
            model.branch.proj_out.weight.normal_(0.0, 0.3)
    return model


def inputs(b=2, s=8, n_real=5, t=1001, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, 3, t, generator=g)
    x[:, n_real:] = 0
    pos = torch.randn(b, s, 3, generator=g) * 20
    pos[:, n_real:] = 0
    return x, pos


def test_output_shapes_and_probabilities():
    model = small_model()
    x, pos = inputs()
    with torch.no_grad():
        out = model(x, positions=pos)
    assert out["picks"].shape == (2, 8, 3, 1001)
    assert out["event_mean"].shape == (2, 4) and out["event_std"].shape == (2, 4)
    assert torch.all(out["event_std"] > 0)
    sums = out["picks"][:, :5].sum(2)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert torch.all(out["picks"][:, 5:] == 0)  # padded stations give nothing


@pytest.mark.parametrize("training", [False, True])
def test_padding_does_not_change_outputs(training):
    model = small_model()
    model.train(training)
    x, pos = inputs(s=8, n_real=5)
    torch.manual_seed(0)
    with torch.no_grad():
        padded = model(x, positions=pos)
        unpadded = model(x[:, :5].contiguous(), positions=pos[:, :5].contiguous())
        # Garbage in the padded slots must not matter either when the mask says so
        x2 = x.clone()
        x2[:, 5:] = torch.randn_like(x2[:, 5:]) * 100
        mask = torch.zeros(2, 8, dtype=torch.bool)
        mask[:, :5] = True
        masked = model(x2, positions=pos, station_mask=mask)
    for other in (unpadded, masked):
        assert torch.allclose(padded["picks"][:, :5], other["picks"][:, :5], atol=1e-5)
        assert torch.allclose(padded["event_mean"], other["event_mean"], atol=1e-4)
        assert torch.allclose(padded["event_std"], other["event_std"], atol=1e-4)


def test_station_permutation_equivariance():
    model = small_model()
    x, pos = inputs(s=8, n_real=8)
    perm = torch.tensor([3, 0, 7, 5, 1, 6, 2, 4])
    with torch.no_grad():
        a = model(x, positions=pos)
        b = model(x[:, perm], positions=pos[:, perm])
    assert torch.allclose(a["picks"][:, perm], b["picks"], atol=1e-5)
    assert torch.allclose(a["event_mean"], b["event_mean"], atol=1e-4)
    assert torch.allclose(a["event_std"], b["event_std"], atol=1e-4)


def test_geometry_changes_outputs():
    model = small_model()
    x, pos = inputs(n_real=8)
    with torch.no_grad():
        a = model(x, positions=pos)
        b = model(x, positions=pos * 3)
    assert not torch.allclose(a["event_mean"], b["event_mean"])
    assert not torch.allclose(a["picks"], b["picks"])


def test_untrained_branch_leaves_the_per_station_path_unchanged():
    """The graph branch's output projection starts at zero: picks are the per-station path's alone (what the
    published picker returns after SINE.from_picker), whatever the geometry and the other stations; once the
    projection is non-zero the other stations change them."""
    model = small_model(trained_branch=False)
    x, pos = inputs(n_real=6)
    with torch.no_grad():
        out = model(x, positions=pos, teacher=True)
        moved = model(x, positions=pos * 3)
        alone = model(x[:, :1], positions=pos[:, :1])
        h, skips = model.backbone.encode(x[0, :6])
        direct = torch.softmax(model.backbone.decode(h, skips), dim=1)
    assert torch.equal(out["picks"], out["teacher_picks"])
    assert torch.equal(out["picks"], moved["picks"])
    assert torch.allclose(out["picks"][:, :1], alone["picks"], atol=1e-6)
    assert torch.allclose(out["picks"][0, :6], direct, atol=1e-6)
    with torch.no_grad():
        model.branch.proj_out.weight.normal_(0.0, 0.3)
        trained = model(x, positions=pos, teacher=True)
    assert torch.allclose(trained["teacher_picks"], out["picks"], atol=1e-6)
    assert not torch.allclose(trained["picks"], out["picks"], atol=1e-3)


def test_a_station_without_neighbours_keeps_the_pickers_picks():
    """Alone in its group (one station, or a radius that leaves it isolated), a station gets the per-station
    path's picks even with a trained branch; its neighbours still get the branch's residual."""
    model = small_model()  # non-zero branch output
    x, pos = inputs(n_real=3)
    pos[:, 2, 0] += 500.0  # station 2 far away
    with torch.no_grad():
        alone = model(x[:, :1], positions=pos[:, :1], teacher=True)
        isolated = model(x, positions=pos, teacher=True, event=False)
        model.radius_km = 200.0
        capped = model(x, positions=pos, teacher=True, event=False)
    assert torch.equal(alone["picks"], alone["teacher_picks"])
    assert not torch.allclose(isolated["picks"][:, 2], isolated["teacher_picks"][:, 2], atol=1e-4)
    assert torch.equal(capped["picks"][:, 2], capped["teacher_picks"][:, 2])
    assert not torch.allclose(capped["picks"][:, :2], capped["teacher_picks"][:, :2], atol=1e-4)


def test_z_only_station_is_flagged_and_runs():
    model = small_model()
    x, pos = inputs(n_real=4)
    x[:, 1, 1:] = 0  # station 1: vertical only
    with torch.no_grad():
        out = model(x, positions=pos)
        x_noisy = x.clone()
        x_noisy[:, 1, 1:] = 1e-3
        out_noisy = model(x_noisy, positions=pos)
    assert torch.isfinite(out["picks"]).all()
    # A zero horizontal is absent (flag 0 for the event head), a tiny non-zero one is not: outputs differ
    assert not torch.allclose(out["picks"][:, 1], out_noisy["picks"][:, 1])


def test_knn_graph_respects_mask_and_radius():
    pos = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [50, 0, 0], [0, 0, 0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    ei, ea = build_station_graph(pos, mask, k=2)
    assert ei.shape[1] == 8  # 4 real stations x 2 neighbours
    assert not (ei == 4).any()
    assert ea.shape == (8, 4)
    ei_r, _ = build_station_graph(pos, mask, k=3, radius_km=5.0)
    assert not (ei_r == 3).any()  # the far station is isolated
    # Station 0's neighbours are 1 and 2
    assert sorted(ei[0, ei[1] == 0].tolist()) == [1, 2]
    # Distance attribute in units of 100 km; azimuth from 0 to 1 is east (sin=1)
    e01 = ((ei[0] == 1) & (ei[1] == 0)).nonzero().item()
    assert ea[e01, 0].item() == pytest.approx(0.01)
    assert ea[e01, 1].item() == pytest.approx(1.0)


def test_routing_probabilities_form_a_distribution_per_edge():
    routing = NeighbourhoodRouting(iterations=3)
    z = torch.nn.functional.normalize(torch.randn(6, 4, 8), dim=-1)
    ei = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    p = routing(z, ei)
    assert p.shape == (6, 4)
    assert torch.allclose(p.sum(-1), torch.ones(6), atol=1e-6)


def test_graph_layer_passes_messages_only_along_edges():
    layer = DisentangledGraphLayer(16, n_channels=4).eval()
    x = torch.randn(3, 16, 10)
    ei = torch.tensor([[0], [1]])  # 0 -> 1 only
    ea = torch.zeros(1, 4)
    y, _ = layer(x, ei, ea)
    x2 = x.clone()
    x2[0] += 1.0
    y2, _ = layer(x2, ei, ea)
    assert not torch.allclose(y[1], y2[1])  # node 1 hears node 0
    assert torch.allclose(y[2], y2[2])  # node 2 does not


def test_gradients_reach_all_heads():
    model = small_model().train()
    x, pos = inputs(n_real=6)
    out = model(x, positions=pos, logits=True)
    loss = out["picks"].mean() + out["event_mean"].sum() + out["event_std"].sum()
    loss.backward()
    for name in [
        "backbone.inc.weight",
        "branch.lstm.weight_ih_l0",
        "branch.graph.0.convs.0.lin.weight",
        "backbone.out.weight",
        "event_head.mlp.2.weight",
    ]:
        params = [p for n, p in model.named_parameters() if n.startswith(name)]
        assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name


def test_channel_conv_equals_explicit_weighted_mean_with_gradients():
    from sine_seisbench.nn.disentangle import ChannelConv

    torch.manual_seed(0)
    conv = ChannelConv(4)
    h = torch.randn(5, 4, 10)
    ei = torch.tensor([[0, 1, 2, 3, 0], [1, 2, 3, 4, 4]])
    w = torch.rand(5, requires_grad=True)
    out = conv(h, ei, w)
    x = conv.lin(h)
    agg = torch.zeros_like(x).index_add(0, ei[1], w.view(-1, 1, 1) * x[ei[0]])
    norm = torch.zeros(5).index_add(0, ei[1], w)
    ref = h + conv.temporal(torch.relu(agg / (norm.view(-1, 1, 1) + 1e-6)))
    assert torch.allclose(out, ref, atol=1e-6)
    (g,) = torch.autograd.grad(out.sum(), w)
    (g_ref,) = torch.autograd.grad(ref.sum(), w)
    assert torch.allclose(g, g_ref, atol=1e-5)
