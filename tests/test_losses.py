"""net.py's training losses: CCPL, WCE and their helpers against hand/numpy computations, and the
full network's losses and gradients."""
import numpy as np
import pytest
import torch
from torch import nn

import function
import net
from net import (CCPL, WCE, ContrastiveSpec, build_network, gather_blocks, info_nce, neighbourhood_index,
                 neighbourhood_kl, projected_differences, sample_anchors, sinkhorn_weights)

# The 3×3 block in the reference order: the anchor, then its 8 neighbours row by row.
BLOCK_OFFSETS = [(0, 0), (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
LOSS_WEIGHTS = {"content": 1.0, "style": 10.0, "nce": 5.0, "kl": 5.0}     # the method's defaults
PHOTO_ANCHORS = [torch.tensor([[1, 1], [2, 5], [5, 3], [6, 6]])] * 3     # inside 8×8 and larger maps


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """``content + 10·style + 5·(nce + kl)``, written out here independently of glfa/train.py."""
    return sum(LOSS_WEIGHTS[name] * value for name, value in losses.items())


def shuffled(feat: torch.Tensor, seed: int) -> torch.Tensor:
    """The same feature vectors at spatially permuted positions."""
    perm = torch.randperm(feat.shape[2] * feat.shape[3], generator=torch.Generator().manual_seed(seed))
    return feat.flatten(2)[:, :, perm].view_as(feat)


def unit_rows(shape: tuple, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def test_sample_anchors_away_from_border_and_distinct():
    torch.manual_seed(0)
    for height, width, num_s in [(6, 7, 20), (9, 9, 8), (3, 3, 1), (32, 5, 8)]:
        for _ in range(10):
            anchors = sample_anchors(height, width, num_s)
            assert anchors.shape == (num_s, 2) and anchors.dtype == torch.long
            assert anchors[:, 0].min() >= 1 and anchors[:, 0].max() <= height - 2
            assert anchors[:, 1].min() >= 1 and anchors[:, 1].max() <= width - 2
            assert len({tuple(a) for a in anchors.tolist()}) == num_s
    # Every interior position of a 6×7 map is reachable: 20 anchors cover all 4×5 of them.
    assert {tuple(a) for a in sample_anchors(6, 7, 20).tolist()} == {(r, c) for r in range(1, 5) for c in range(1, 6)}
    # A map with fewer interior positions than num_s gives every interior position once.
    assert sample_anchors(3, 4, 8).tolist() in ([[1, 1], [1, 2]], [[1, 2], [1, 1]])
    with pytest.raises(ValueError):
        sample_anchors(2, 10, 1)


def test_neighbourhood_index_by_hand():
    index = neighbourhood_index(torch.tensor([[1, 1], [2, 3]]), width=5)
    assert index.shape == (9, 2)
    assert index[:, 0].tolist() == [6, 0, 1, 2, 5, 7, 10, 11, 12]
    assert index[:, 1].tolist() == [13, 7, 8, 9, 12, 14, 17, 18, 19]


def test_gather_blocks_matches_direct_slicing():
    feat = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    anchors = torch.tensor([[1, 1], [4, 5], [2, 3]])
    blocks = gather_blocks(feat, neighbourhood_index(anchors, feat.shape[3]))
    assert blocks.shape == (2, 9, 3, 5)
    for j, (dr, dc) in enumerate(BLOCK_OFFSETS):
        for a, (row, col) in enumerate(anchors.tolist()):
            assert torch.equal(blocks[:, j, a, :], feat[:, :, row + dr, col + dc])


def test_projected_differences_layout():
    blocks = torch.randn(2, 9, 3, 4, generator=torch.Generator().manual_seed(1))
    out = projected_differences(blocks, nn.Identity())
    assert out.shape == (2, 8 * 3, 4)
    # Neighbour-major: row (j - 1)·num_s + a is anchor a minus its neighbour j.
    for j in range(1, 9):
        for a in range(3):
            diff = blocks[:, 0, a] - blocks[:, j, a]
            torch.testing.assert_close(out[:, (j - 1) * 3 + a], diff / diff.norm(dim=-1, keepdim=True))


def np_info_nce(query: np.ndarray, key: np.ndarray, tau: float, log_weights: np.ndarray | None = None) -> float:
    """Cross-entropy with the positive first and the other S-1 keys as (weighted) negatives."""
    losses = []
    for q_img, k_img, n in zip(query, key, range(len(query))):
        sims = q_img @ k_img.T
        for i in range(len(q_img)):
            negatives = np.delete(sims[i] + (0 if log_weights is None else tau * log_weights[n, i]), i)
            logits = np.concatenate(([sims[i, i]], negatives)) / tau
            losses.append(np.log(np.exp(logits).sum()) - logits[0])
    return float(np.mean(losses))


def test_info_nce_by_hand():
    # Two orthonormal pairs, q = k: positive logit 1/tau, one negative logit 0.
    q = torch.eye(2)[None]
    tau = 0.5
    assert info_nce(q, q, tau).item() == pytest.approx(np.log(1 + np.exp(-1 / tau)), rel=1e-6)


def test_info_nce_matches_numpy():
    query, key = unit_rows((2, 5, 3), seed=2), unit_rows((2, 5, 3), seed=3)
    log_w = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(4))
    assert info_nce(query, key, 0.07).item() == pytest.approx(np_info_nce(query.numpy(), key.numpy(), 0.07), rel=1e-5)
    assert info_nce(query, key, 0.3, log_w).item() == pytest.approx(
        np_info_nce(query.numpy(), key.numpy(), 0.3, log_w.numpy()), rel=1e-5)
    # Uniform weights (log w = 0) are plain InfoNCE.
    assert torch.equal(info_nce(query, key, 0.07, torch.zeros(2, 5, 5)), info_nce(query, key, 0.07))


def np_sinkhorn(query: np.ndarray, key: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """Alternate row and column scaling of the masked kernel, finish on the rows, scale by S-1."""
    plans = []
    for q, k in zip(query.astype(np.float64), key.astype(np.float64)):
        s = len(q)
        kernel = np.exp(q @ k.T / eps) * (1 - np.eye(s))
        u, v = np.ones(s), np.ones(s)
        for _ in range(iters):
            u = 1 / (kernel @ v)
            v = 1 / (kernel.T @ u)
        plan = kernel * v[None, :]
        plans.append(plan / plan.sum(1, keepdims=True) * (s - 1))
    return np.stack(plans)


def test_sinkhorn_weights_rows_average_one_over_negatives():
    query, key = unit_rows((2, 12, 6), seed=5), unit_rows((2, 12, 6), seed=6)
    weights = sinkhorn_weights(query, key, eps=1.0, iters=50)
    assert weights.shape == (2, 12, 12)
    off_diagonal = ~torch.eye(12, dtype=torch.bool)
    assert torch.all(weights.diagonal(dim1=1, dim2=2) == 0)
    assert torch.all(weights[:, off_diagonal] > 0)
    torch.testing.assert_close(weights.sum(2) / 11, torch.ones(2, 12))
    # It is a transport plan, not a row softmax: columns are balanced as well.
    torch.testing.assert_close(weights.sum(1) / 11, torch.ones(2, 12), atol=1e-3, rtol=0)
    np.testing.assert_allclose(weights.numpy(), np_sinkhorn(query.numpy(), key.numpy(), 1.0, 50), rtol=1e-4)
    assert weights[:, off_diagonal].std() > 0.05          # the weights do modulate the negatives


def np_neighbourhood_kl(blocks_result: np.ndarray, blocks_content: np.ndarray) -> float:
    def distribution(block: np.ndarray) -> np.ndarray:       # block: (9, C)
        unit = block / np.linalg.norm(block, axis=1, keepdims=True)
        affinity = (unit @ unit.T + 1) / 2
        return affinity / affinity.sum(1, keepdims=True)

    values = []
    for n in range(blocks_result.shape[0]):
        for a in range(blocks_result.shape[2]):
            p = distribution(blocks_content[n, :, a].astype(np.float64))
            r = distribution(blocks_result[n, :, a].astype(np.float64))
            values.append((p * np.log(p / r)).sum(1).mean())
    return float(np.mean(values))


def test_neighbourhood_kl():
    gen = torch.Generator().manual_seed(7)
    content, result = torch.randn(2, 9, 3, 5, generator=gen), torch.randn(2, 9, 3, 5, generator=gen)
    assert neighbourhood_kl(content, content).item() == pytest.approx(0, abs=1e-6)
    # Positive per-position rescaling leaves the cosines, hence the KL, unchanged.
    assert neighbourhood_kl(content * (0.1 + torch.rand(2, 9, 3, 1, generator=gen)), content).item() < 1e-5
    kl = neighbourhood_kl(result, content).item()
    assert kl > 0.01
    assert kl == pytest.approx(np_neighbourhood_kl(result.numpy(), content.numpy()), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# CCPL and WCE modules
# ---------------------------------------------------------------------------------------------

CHANNELS = (16, 32)
ANCHORS = [torch.tensor([[1, 1], [3, 4], [6, 6], [2, 5]]), torch.tensor([[1, 1], [2, 3], [4, 4], [3, 1]])]


@pytest.fixture
def feats() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(8)
    return [torch.randn(2, 16, 8, 8, generator=gen), torch.randn(2, 32, 6, 6, generator=gen)]


@pytest.fixture
def losses_pair() -> tuple[CCPL, WCE]:
    torch.manual_seed(9)
    ccpl = CCPL(CHANNELS, num_s=4, num_l=2)
    wce = WCE(CHANNELS, num_s=4, num_l=2)
    wce.load_state_dict(ccpl.state_dict())
    return ccpl, wce


def test_projection_heads_shapes():
    ccpl = CCPL((64, 128, 256))
    assert [(h[0].in_features, h[0].out_features, h[2].out_features) for h in ccpl.heads] == [
        (64, 64, 16), (128, 128, 32), (256, 256, 64)]
    for bad in (0, 4):
        with pytest.raises(ValueError, match="num_l"):
            CCPL((64, 128, 256), num_l=bad)


@pytest.mark.parametrize("which", [0, 1])
def test_contrastive_small_for_identical_and_grows_when_shuffled(losses_pair, feats, which):
    loss = losses_pair[which]
    same = loss(feats, feats, ANCHORS)
    mixed = loss([shuffled(f, seed=i) for i, f in enumerate(feats)], feats, ANCHORS)
    chance = 2 * np.log(8 * 4)                      # 2 layers, S = 32: uniform logits
    assert same["nce"].item() < 0.75 * chance
    assert mixed["nce"].item() > 3 * same["nce"].item()
    if which == 1:
        assert same["kl"].item() == pytest.approx(0, abs=1e-6)
        assert mixed["kl"].item() > 0.01


def test_ccpl_identical_loss_by_hand(losses_pair, feats):
    """With result == content, every query equals its key: the loss is log(1 + Σ exp((cos - 1)/tau))."""
    ccpl = losses_pair[0]
    expected = 0.0
    for feat, anchors, head in zip(feats, ANCHORS, ccpl.heads):
        blocks = feat[:, :, anchors[:, 0, None] + torch.tensor([o[0] for o in BLOCK_OFFSETS]),
                      anchors[:, 1, None] + torch.tensor([o[1] for o in BLOCK_OFFSETS])]   # (N, C, S, 9)
        diffs = (blocks[..., :1] - blocks[..., 1:]).permute(0, 3, 2, 1).flatten(1, 2)         # (N, 8·S, C)
        with torch.no_grad():
            vecs = torch.nn.functional.normalize(head(diffs), dim=-1).double().numpy()
        expected += np_info_nce(vecs, vecs, ccpl.tau)
    assert ccpl(feats, feats, ANCHORS)["nce"].item() == pytest.approx(expected, rel=1e-4)


def test_wce_with_uniform_weights_equals_ccpl(losses_pair, feats, monkeypatch):
    ccpl, wce = losses_pair
    result = [f + 0.5 * shuffled(f, seed=10) for f in feats]
    ccpl_nce = ccpl(result, feats, ANCHORS)["nce"]
    weighted_nce = wce(result, feats, ANCHORS)["nce"]
    assert abs(weighted_nce.item() - ccpl_nce.item()) > 1e-3        # the OT weights change the loss
    monkeypatch.setattr(net, "sinkhorn_weights", lambda q, k, *args: torch.ones(q.shape[0], q.shape[1], q.shape[1]))
    torch.testing.assert_close(wce(result, feats, ANCHORS)["nce"], ccpl_nce)


@pytest.mark.parametrize("which", [0, 1])
def test_random_anchors_give_finite_loss(losses_pair, feats, which):
    torch.manual_seed(11)
    out = losses_pair[which]([shuffled(f, 12) for f in feats], feats)
    assert out.keys() == ({"nce"} if which == 0 else {"nce", "kl"})
    assert all(torch.isfinite(v) and v.item() > 0 for v in out.values())


# ---------------------------------------------------------------------------------------------
# The full network
# ---------------------------------------------------------------------------------------------

def make_network(mode: str, transform: str, contrastive: str, seed: int) -> net.StyleTransferNet:
    """A network whose random encoder keeps activations at unit scale (He init, zero bias), so the
    features, and hence every loss term, are far from degenerate."""
    torch.manual_seed(seed)
    network = build_network(mode, transform, ContrastiveSpec(contrastive, num_s=4))
    for module in network.stages.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return network


def _images(batch: int = 2, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=gen), torch.rand(batch, 3, size, size, generator=gen)


def test_build_network_rejects_unknown_contrastive():
    with pytest.raises(ValueError, match="contrastive"):
        build_network("photo", "lct", "nce")
    network = build_network("photo", "lct", "none")
    losses, result = network(*_images(1))
    assert losses.keys() == {"content", "style"} and result.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("mode, contrastive, size", [("photo", "wce", 32), ("photo", "ccpl", 32), ("art", "wce", 40)])
def test_losses_finite_on_constant_images(mode, contrastive, size):
    network = make_network(mode, "lct", contrastive, seed=13)
    zeros, ones = torch.zeros(1, 3, size, size), torch.ones(1, 3, size, size)
    for content, style in [(zeros, zeros), (ones, ones), (zeros, ones), (ones, zeros)]:
        network.zero_grad()
        losses, result = network(content, style)
        expected = {"content", "style", "nce"} | ({"kl"} if contrastive == "wce" else set())
        assert losses.keys() == expected
        assert all(torch.isfinite(v) for v in losses.values()), losses
        total_loss(losses).backward()
        assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode", ["photo", "art"])
def test_network_runs_at_the_smallest_side(mode):
    """At ``min_side`` the last feature map is 3×3 (photo) or 5×5 (art), with fewer interior
    positions than the default 8 anchors, and SCT's style branch sees a single position."""
    network = make_network(mode, "lct", "wce", seed=17)
    side = net.parse_mode(mode).min_side
    losses, result = network(*_images(1, side, seed=18))
    assert result.shape == (1, 3, side, side)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("transform", ["lct", "sct"])
@pytest.mark.parametrize("contrastive", ["wce", "ccpl"])
def test_gradients_reach_trained_parts_only(transform, contrastive):
    network = make_network("photo", transform, contrastive, seed=14).train()
    losses, _ = network(*_images(), anchors=PHOTO_ANCHORS)
    total_loss(losses).backward()
    for name, part in [("decoder", network.decoder), ("transform", network.transform),
                       ("heads", network.contrastive.heads)]:
        for pname, param in part.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}.{pname} gets no gradient"
    for param in network.stages.parameters():
        assert not param.requires_grad and param.grad is None
    assert all(not stage.training for stage in network.stages)


def test_adam_steps_lower_the_total_loss():
    network = make_network("photo", "lct", "wce", seed=15).train()
    content, style = _images(seed=16)
    optimiser = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=2e-4)
    history = []
    for _ in range(15):
        optimiser.zero_grad()
        total = total_loss(network(content, style, anchors=PHOTO_ANCHORS)[0])
        total.backward()
        optimiser.step()
        history.append(total.item())
    assert history[-1] < 0.85 * history[0], history
    assert np.mean(history[-3:]) < np.mean(history[:3]), history


# ---------------------------------------------------------------------------------------------
# Gradient paths and the objective (docs/method.md: keys detached, OT plan differentiable in the
# queries, the weights as given, the content loss at the last layer)
# ---------------------------------------------------------------------------------------------

def _head_gradients(loss: CCPL, feats_result: list[torch.Tensor], feats_content: list[torch.Tensor]) -> list:
    loss.zero_grad()
    sum(loss(feats_result, feats_content, ANCHORS).values()).backward()
    return [p.grad.clone() for p in loss.heads.parameters()]


@pytest.mark.parametrize("which", [0, 1])
def test_keys_are_detached_heads_learn_through_queries_only(losses_pair, feats, which):
    """The heads' gradient is the one with the content's key vectors held constant. Computed
    here independently: the keys are made under ``no_grad`` and the loss is written out."""
    loss = losses_pair[which]
    result = [f + 0.7 * shuffled(f, seed=20 + i) for i, f in enumerate(feats)]
    got = _head_gradients(loss, result, feats)

    loss.zero_grad()
    expected_total = 0.0
    for layer, anchors in enumerate(ANCHORS):
        index = neighbourhood_index(anchors, feats[layer].shape[3])
        blocks_r, blocks_c = gather_blocks(result[layer], index), gather_blocks(feats[layer], index)
        query = projected_differences(blocks_r, loss.heads[layer])
        with torch.no_grad():
            key = projected_differences(blocks_c, loss.heads[layer])
        log_w = sinkhorn_weights(query, key).clamp_min(1e-30).log() if which == 1 else None
        expected_total = expected_total + info_nce(query, key, loss.tau, log_w)
    expected_total.backward()
    for g, p in zip(got, loss.heads.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def test_attached_keys_would_change_the_head_gradients(losses_pair, feats):
    """The test above can fail: letting gradients through the keys changes the heads' gradients a lot."""
    ccpl = losses_pair[0]
    result = [f + 0.7 * shuffled(f, seed=20 + i) for i, f in enumerate(feats)]
    detached = _head_gradients(ccpl, result, feats)
    ccpl.queries_and_keys = lambda br, bc, head: (projected_differences(br, head), projected_differences(bc, head))
    attached = _head_gradients(ccpl, result, feats)
    change = max(((a - d).norm() / d.norm()).item() for a, d in zip(attached, detached) if d.norm() > 0)
    assert change > 0.1


def test_ot_plan_gradient_flows_into_the_queries():
    """WCE's NCE as a function of the queries (keys fixed) has the gradient autograd computes,
    checked against finite differences in float64: it includes the plan's dependence on the
    queries, which a plan computed under ``no_grad`` would drop."""
    gen = torch.Generator().manual_seed(30)
    key = unit_rows((2, 6, 4), seed=31).double()
    query = torch.nn.functional.normalize(torch.randn(2, 6, 4, generator=gen, dtype=torch.float64), dim=-1)
    query.requires_grad_(True)

    def weighted_nce(q: torch.Tensor) -> torch.Tensor:
        return info_nce(q, key, 0.3, sinkhorn_weights(q, key, eps=0.5).clamp_min(1e-30).log())

    assert torch.autograd.gradcheck(weighted_nce, (query,), eps=1e-6, atol=1e-5)
    # and the plan's share of the gradient is not negligible
    grad_full, = torch.autograd.grad(weighted_nce(query), query)
    frozen = sinkhorn_weights(query.detach(), key, eps=0.5).clamp_min(1e-30).log()
    grad_frozen, = torch.autograd.grad(info_nce(query, key, 0.3, frozen), query)
    assert (grad_full - grad_frozen).norm() > 0.05 * grad_full.norm()


def test_sinkhorn_runs_fifty_iterations_by_default(feats, monkeypatch):
    """The default plan's columns balance to 1e-5 (one iteration leaves them 1e-2 off, three
    4e-5), and WCE built with its defaults asks for eps 1 and 50 iterations on every layer."""
    query, key = unit_rows((2, 12, 6), seed=5), unit_rows((2, 12, 6), seed=6)
    assert (sinkhorn_weights(query, key).sum(1) / 11 - 1).abs().max() < 1e-5
    calls, real = [], net.sinkhorn_weights
    monkeypatch.setattr(net, "sinkhorn_weights",
                        lambda q, k, eps, iters: calls.append((eps, iters, q.shape[0])) or real(q, k, eps, iters))
    WCE(CHANNELS, num_s=4, num_l=2)(feats, feats, ANCHORS)
    batch = feats[0].shape[0]
    assert calls == [(1.0, 50, batch * len(ANCHORS))]     # one loop for the layers stacked along the batch


@pytest.mark.parametrize("anchors", [ANCHORS, [ANCHORS[0], ANCHORS[1][:3]]], ids=["stacked", "anchor_counts_differ"])
def test_wce_fast_path_equals_the_sum_of_layer_losses(feats, anchors):
    """``WCE.forward`` (the fast path ``stacked_wce``: the layers' projected vectors zero-padded
    to one width, one InfoNCE over the stack) gives the readable per-layer sum
    (``sum_of_layer_losses`` of ``layer_loss``), value and gradient of both terms, also when
    the layers' anchor counts differ (those are not stacked)."""
    torch.manual_seed(42)
    wce = WCE(CHANNELS, num_s=4, num_l=2)
    result = [(f + 0.5 * shuffled(f, seed=43 + i)).requires_grad_() for i, f in enumerate(feats)]
    expected = wce.sum_of_layer_losses(wce.layer_blocks(result, feats, anchors))
    found = wce(result, feats, anchors)
    assert found.keys() == expected.keys() == {"nce", "kl"}
    for term in ("nce", "kl"):
        torch.testing.assert_close(found[term], expected[term], rtol=1e-5, atol=1e-6)
        for a, b in zip(torch.autograd.grad(found[term], result, retain_graph=True),
                        torch.autograd.grad(expected[term], result, retain_graph=True)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    by_hand = sum(wce.weighted_nce(*wce.queries_and_keys(*layer)) for layer in wce.layer_blocks(result, feats, anchors))
    torch.testing.assert_close(expected["nce"], by_hand)


def test_wce_matches_infonce_with_a_numpy_sinkhorn_plan(feats):
    """WCE as built by default matches InfoNCE with a numpy 50-iteration Sinkhorn plan."""
    torch.manual_seed(40)
    wce = WCE(CHANNELS, num_s=4, num_l=2)
    result = [f + 0.5 * shuffled(f, seed=41 + i) for i, f in enumerate(feats)]
    expected = 0.0
    for layer, anchors in enumerate(ANCHORS):
        index = neighbourhood_index(anchors, feats[layer].shape[3])
        with torch.no_grad():
            q = projected_differences(gather_blocks(result[layer], index), wce.heads[layer]).double().numpy()
            k = projected_differences(gather_blocks(feats[layer], index), wce.heads[layer]).double().numpy()
        log_w = np.log(np_sinkhorn(q, k, 1.0, 50) + np.eye(q.shape[1]))   # the diagonal is never used
        expected += np_info_nce(q, k, wce.tau, log_w)
    assert wce(result, feats, ANCHORS)["nce"].item() == pytest.approx(expected, rel=1e-4)


def test_total_loss_uses_every_weight():
    """``Σ weight·term`` by hand, with weights that tell the terms apart; each weight is named like its term."""
    losses = {"content": torch.tensor(2.0), "style": torch.tensor(3.0), "nce": torch.tensor(5.0),
              "kl": torch.tensor(7.0)}
    weights = net.LossWeights(content=0.5, style=11.0, nce=13.0, kl=13.0 * 0.25, pixel=17.0)
    assert net.total_loss(losses, weights).item() == pytest.approx(0.5 * 2 + 11 * 3 + 13 * (5 + 0.25 * 7))
    ccpl_losses = {k: v for k, v in losses.items() if k != "kl"}
    assert net.total_loss(ccpl_losses, weights).item() == pytest.approx(0.5 * 2 + 11 * 3 + 13 * 5)
    reconstruction = {"content": torch.tensor(2.0), "pixel": torch.tensor(0.5)}
    assert net.total_loss(reconstruction, weights).item() == pytest.approx(0.5 * 2 + 17 * 0.5)
    assert net.LossWeights() == net.LossWeights(content=1.0, style=10.0, nce=5.0, kl=5.0, pixel=net.PIXEL_WEIGHT)


def test_train_flags_reach_the_loss_weights():
    """``--kl_weight`` is relative to ``--wce_weight`` (the method's ``wce_weight·(nce + kl)``)."""
    from train import parse_args
    args = parse_args(["--content_dir", "c", "--style_dir", "s", "--content_weight", "0.5", "--style_weight", "3",
                       "--wce_weight", "2", "--kl_weight", "0.125", "--pixel_weight", "7"])
    assert args.loss_weights == net.LossWeights(content=0.5, style=3.0, nce=2.0, kl=0.25, pixel=7.0)


def test_content_loss_is_taken_at_the_last_layer():
    """MSE between the encoder's last-layer features (relu3_1 in photo mode, children ``[:18]``)
    of the result and of the content, recomputed with the plain encoder Sequential."""
    network = make_network("photo", "lct", "wce", seed=50)
    content, style = _images(seed=51)
    losses, result = network(content, style, anchors=PHOTO_ANCHORS)
    encoder = nn.Sequential(*network.stages)
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(encoder(result), encoder(content))
        relu2_1 = torch.nn.functional.mse_loss(nn.Sequential(*network.stages[:2])(result),
                                               nn.Sequential(*network.stages[:2])(content))
    assert losses["content"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(relu2_1.item() - expected.item()) > 0.01 * expected.item()   # a wrong layer would show


def test_unit_vectors_keep_gradients_bounded_near_zero():
    """Near-zero difference vectors (flat regions) get gradients below 1/UNIT_EPS, not 1/norm;
    ordinary vectors come out with unit length."""
    upstream = torch.nn.functional.normalize(torch.linspace(-1, 1, 64), dim=0)   # a unit-norm output gradient
    for norm in (1e-8, 1e-5, 1e-3):
        vector = (torch.full((1, 64), 1.0) / 8 * norm).requires_grad_(True)
        (net.unit_vectors(vector) * upstream).sum().backward()
        assert torch.isfinite(vector.grad).all() and vector.grad.norm() <= 1.01 / net.UNIT_EPS
    ordinary = torch.randn(5, 64, generator=torch.Generator().manual_seed(52))
    torch.testing.assert_close(net.unit_vectors(ordinary).norm(dim=-1), torch.ones(5))


def test_identity_losses_compare_the_content_with_itself_in_its_own_style():
    """``identity``: pixel MSE between the content and ``decoder(transform(c, c))``;
    ``identity_feature``: their features' MSE summed over the layers; only when asked for."""
    network = make_network("photo", "lct", "wce", seed=60)
    network.identity = True
    content, style = _images(seed=61)
    losses, _ = network(content, style, anchors=PHOTO_ANCHORS)
    with torch.no_grad():
        feat = nn.Sequential(*network.stages)(content)
        expected = torch.nn.functional.mse_loss(network.decoder(network.transform(feat, feat)), content)
    assert losses["identity"].item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        itself = network.decoder(network.transform(feat, feat))
        features = sum(torch.nn.functional.mse_loss(nn.Sequential(*network.stages[:i + 1])(itself),
                                                    nn.Sequential(*network.stages[:i + 1])(content)) for i in range(3))
    assert losses["identity_feature"].item() == pytest.approx(features.item(), rel=1e-4)
    weights = net.LossWeights(identity=3.0, identity_feature=0.5)
    without = {k: v for k, v in losses.items() if not k.startswith("identity")}
    assert (net.total_loss(losses, weights) - net.total_loss(without, weights)).item() == pytest.approx(
        3.0 * expected.item() + 0.5 * features.item(), rel=1e-4)
    network.identity = False
    assert not any(k.startswith("identity") for k in network(content, style, anchors=PHOTO_ANCHORS)[0])


def test_local_moments_match_a_window_by_window_computation():
    """Every pixel's variances and covariance are those of the box around it, cut at the borders;
    the structure loss is the content-variance-weighted mean correlation built from them."""
    gen = torch.Generator().manual_seed(70)
    first, second = torch.rand(1, 1, 6, 7, generator=gen), torch.rand(1, 1, 6, 7, generator=gen)
    var_1, var_2, cov = function.local_moments(first, second, radius=1)
    a, b = first[0, 0].double().numpy(), second[0, 0].double().numpy()
    correlations, weights = [], []
    for y in range(6):
        for x in range(7):
            wa, wb = a[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2], b[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
            expected = (wa.var(), wb.var(), ((wa - wa.mean()) * (wb - wb.mean())).mean())
            for got, value in zip((var_1, var_2, cov), expected):
                assert got[0, 0, y, x].item() == pytest.approx(value, abs=1e-6)
            correlations.append(expected[2] / np.sqrt((wa.var() + 1e-6) * (wb.var() + 1e-6)))
            weights.append(wb.var() / (wb.var() + 0.03 ** 2))
    grey = lambda m: m.expand(-1, 3, -1, -1)                              # luma of a grey image is itself
    expected_loss = 1 - np.dot(weights, correlations) / np.sum(weights)
    assert net.structure_loss(grey(first), grey(second), radius=1).item() == pytest.approx(expected_loss, abs=1e-5)


def test_structure_loss_ignores_tone_and_sees_structure():
    """0 for the content under any increasing brightness/contrast change, 2 for its negative, 1
    for a flat image (flattening earns nothing), and it falls when an image is optimised
    against it alone."""
    content = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(71))
    assert net.structure_loss(0.4 * content + 0.3, content).item() == pytest.approx(0, abs=1e-3)
    assert net.structure_loss(1 - content, content).item() == pytest.approx(2, abs=1e-3)
    assert net.structure_loss(0.05 * content + 0.5, content).item() == pytest.approx(0, abs=1e-2)
    assert net.structure_loss(torch.full_like(content, 0.5), content).item() == pytest.approx(1, abs=1e-6)
    gray = net.luma(content).expand(-1, 3, -1, -1)
    assert net.luma(content).shape == (1, 1, 24, 24)
    torch.testing.assert_close(net.luma(gray), net.luma(content))       # the luma weights sum to 1
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(72)).requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.02)
    start = net.structure_loss(image, content).item()
    for _ in range(50):
        optimiser.zero_grad()
        loss = net.structure_loss(image, content)
        loss.backward()
        optimiser.step()
    assert start > 0.5 and loss.item() < 0.5 * start


def test_contrast_structure_loss_also_penalises_texture_where_the_content_is_flat():
    """SSIM without brightness, by hand on one window; unlike the correlation, it costs texture
    painted over a flat content and a flattened result alike."""
    gen = torch.Generator().manual_seed(75)
    first, second = torch.rand(1, 1, 5, 5, generator=gen), torch.rand(1, 1, 5, 5, generator=gen)
    a, b = first.double().numpy().ravel(), second.double().numpy().ravel()
    t = 0.03 ** 2
    by_hand = 1 - (2 * np.cov(a, b, bias=True)[0, 1] + t) / (a.var() + b.var() + t)
    # radius 2 on a 5×5 map: the centre's window is the whole map; compare there.
    var_1, var_2, cov = function.local_moments(first, second, radius=2)
    assert (1 - (2 * cov + t) / (var_1 + var_2 + t))[0, 0, 2, 2].item() == pytest.approx(by_hand, abs=1e-5)
    flat = torch.full((1, 3, 24, 24), 0.5)
    texture = 0.5 + 0.2 * torch.rand(1, 3, 24, 24, generator=gen)
    # Over a flat content the correlation has no say: texture and a flat result score the same.
    assert net.correlation_loss(texture, flat).item() == net.correlation_loss(flat + 0.1, flat).item()
    assert net.contrast_structure_loss(texture, flat).item() > 0.5
    assert net.contrast_structure_loss(flat, texture).item() > 0.5         # and flattening costs too
    assert net.contrast_structure_loss(texture + 0.1, texture).item() < 1e-6   # brightness is free


def test_structure_loss_is_a_term_of_the_network_when_asked_for():
    """``structure``: ``structure_loss(result, content)``, weighted by ``--structure_weight``."""
    from train import parse_args
    network = make_network("photo", "lct", "wce", seed=73)
    content, style = _images(seed=74)
    assert "structure" not in network(content, style, anchors=PHOTO_ANCHORS)[0]
    network.structure = "correlation"
    losses, result = network(content, style, anchors=PHOTO_ANCHORS)
    assert losses["structure"].item() == pytest.approx(net.structure_loss(result, content).item(), rel=1e-6)
    network.structure = "contrast_structure"
    other, result = network(content, style, anchors=PHOTO_ANCHORS)
    assert other["structure"].item() == pytest.approx(net.contrast_structure_loss(result, content).item(), rel=1e-6)
    with pytest.raises(ValueError, match="structure terms"):
        net.structure_loss(result, content, terms="ssim")
    weights = parse_args(["--content_dir", "c", "--style_dir", "s", "--structure_weight", "4"]).loss_weights
    without = {k: v for k, v in losses.items() if k != "structure"}
    assert (net.total_loss(losses, weights) - net.total_loss(without, weights)).item() == pytest.approx(
        4 * losses["structure"].item(), rel=1e-4)


def test_the_training_finish_is_the_guided_filter_and_passes_gradients():
    """Issue 25: ``--finish_radius`` takes every loss on the decoder's output finished by the guided
    filter (the content as guide). The finish is linear in the result, so its gradient is its own
    transpose: ⟨F(x), v⟩ = ⟨x, Fᵀv⟩ with Fᵀv from autograd, and F(x + y) = F(x) + F(y)."""
    finish = net.Finish(radius=2, eps=1e-3)
    generator = torch.Generator().manual_seed(75)
    content = torch.rand(2, 3, 20, 24, generator=generator)
    x = torch.rand(2, 3, 20, 24, generator=generator, requires_grad=True)
    y, v = torch.rand(2, 3, 20, 24, generator=generator), torch.randn(2, 3, 20, 24, generator=generator)
    torch.testing.assert_close(finish(content, x), function.guided_filter(content, x, 2, 1e-3))
    torch.testing.assert_close(finish(content, x + y), finish(content, x) + finish(content, y), atol=1e-5, rtol=0)
    (finish(content, x) * v).sum().backward()
    assert (finish(content, x) * v).sum().item() == pytest.approx((x * x.grad).sum().item(), rel=1e-4)

    network = make_network("photo", "lct", "wce", seed=76)
    images = _images(seed=77)
    raw_losses, raw = network(*images, anchors=PHOTO_ANCHORS)
    network.finish = net.Finish(radius=2, eps=1e-2)
    losses, finished = network(*images, anchors=PHOTO_ANCHORS)
    torch.testing.assert_close(finished, network.finish(images[0], raw.detach()), atol=1e-5, rtol=0)
    # the losses are the finished result's: its features against the content's and the style's
    with torch.no_grad():
        feats = network.encode_with_intermediate(finished)
        content_feats, style_feats = (network.encode_with_intermediate(image) for image in images)
    assert losses["content"].item() == pytest.approx(
        torch.nn.functional.mse_loss(feats[-1], content_feats[-1]).item(), rel=1e-5)
    assert losses["style"].item() == pytest.approx(
        sum(net.style_loss(r, s) for r, s in zip(feats, style_feats)).item(), rel=1e-5)
    assert (finished - raw).abs().max() > 1e-3
    losses["style"].backward()
    assert network.decoder[-1].weight.grad.abs().sum() > 0


def test_the_finish_flags_build_the_training_network():
    from train import parse_args
    config = parse_args(["--content_dir", "c", "--style_dir", "s", "--finish_radius", "5", "--finish_eps", "0.01"])
    assert config.finish == net.Finish(5, 0.01)
    assert parse_args(["--content_dir", "c", "--style_dir", "s"]).finish is None


def test_a_seeded_network_starts_from_the_same_weights_as_before_the_contrastive_spec():
    """A seeded run's initial weights depend on the order the parts draw random numbers in: the
    contrastive loss's MLPs first, then the decoder, then the transform (as train.py has always
    built them), so a seed reproduces the runs documented in experiments/."""
    encoder = net.build_encoder("photo")          # loaded from a file in train.py: no random numbers drawn
    torch.manual_seed(0)
    network = build_network("photo", "lct", "wce", encoder=encoder)
    torch.manual_seed(0)
    WCE(net.parse_mode("photo").channels, net.NUM_S, net.NUM_L, net.TAU)
    decoder, transform = net.build_decoder("photo"), net.build_transform("lct", "photo")
    for built, expected in ((network.decoder, decoder), (network.transform, transform)):
        for (name, value), reference in zip(built.state_dict().items(), expected.state_dict().values()):
            assert torch.equal(value, reference), name
