"""The mirror head: InfoNCE against a plain reference, its gradients and edge cases, metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embodied.config import field_docs, from_dict
from embodied.errors import UserError
from embodied.mirror import (
    LEVELS,
    MirrorConfig,
    MirrorHead,
    chance_recall_at_k,
    contrastive_rows,
    info_nce,
    linear_cka,
    pair_alignment,
    positive_mask,
    positive_negative_cosine,
    recall_at_k,
    tsne_plot,
)

# A batch of 6 pairs: distinct episodes, instructions shared by rows (0, 1), classes by (0-2), (3-5).
EPISODE = torch.tensor([10, 11, 12, 13, 14, 15])
INSTRUCTION = torch.tensor([0, 0, 1, 2, 3, 3])
LABEL = torch.tensor([0, 0, 0, 1, 1, 1])


def fixed_pairs(b: int = 6, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_u = torch.randn(b, d, generator=g)
    z_e = z_u + 0.8 * torch.randn(b, d, generator=g)  # correlated partners, not identical
    return z_u, z_e


def reference_mask(ids) -> np.ndarray:
    b = len(ids)
    mask = np.zeros((b, b), dtype=bool)
    for i in range(b):
        for j in range(b):
            mask[i, j] = i == j or int(ids[i]) == int(ids[j])
    return mask


def reference_loss(z_u, z_e, pos, tau) -> float:
    """Symmetric multi-positive InfoNCE (Khosla et al. L_out), written out with loops."""
    u = np.asarray(z_u, dtype=np.float64)
    e = np.asarray(z_e, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    b = len(u)
    terms = []
    for queries, keys, mask in ((u, e, pos), (e, u, pos.T)):
        for i in range(b):
            logits = [float(queries[i] @ keys[j]) / tau for j in range(b)]
            log_z = math.log(sum(math.exp(s) for s in logits))
            positives = [j for j in range(b) if mask[i, j]]
            if 0 < len(positives) < b:  # rows with no negative are left out
                terms.append(-sum(logits[j] - log_z for j in positives) / len(positives))
    return sum(terms) / len(terms) if terms else 0.0


# --------------------------------------------------------------------------- positives
@pytest.mark.parametrize("level, ids", [("episode", EPISODE), ("instruction", INSTRUCTION), ("class", LABEL)])
def test_positive_mask_matches_reference(level, ids):
    mask = positive_mask(level, EPISODE, INSTRUCTION, LABEL)
    assert mask.dtype == torch.bool and mask.shape == (6, 6)
    np.testing.assert_array_equal(mask.numpy(), reference_mask(ids))


def test_episode_level_is_the_diagonal_for_distinct_episodes():
    mask = positive_mask("episode", EPISODE, None, None)
    assert torch.equal(mask, torch.eye(6, dtype=torch.bool))
    # Two windows of one episode are positives of each other, not false negatives.
    mask = positive_mask("episode", torch.tensor([3, 3, 4]), None, None)
    assert mask[0, 1] and mask[1, 0] and not mask[0, 2]


def test_positive_mask_rejects_unknown_level_and_missing_ids():
    with pytest.raises(ValueError, match="unknown positive level"):
        positive_mask("task", EPISODE, INSTRUCTION, LABEL)
    with pytest.raises(ValueError, match="instruction_id"):
        positive_mask("instruction", EPISODE, None, LABEL)


# --------------------------------------------------------------------------- loss
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_info_nce_matches_reference(level, tau):
    z_u, z_e = fixed_pairs()
    mask = positive_mask(level, EPISODE, INSTRUCTION, LABEL)
    loss = info_nce(z_u, z_e, mask, tau)
    expected = reference_loss(z_u.numpy(), z_e.numpy(), mask.numpy(), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_one_positive_per_row_is_standard_infonce():
    z_u, z_e = fixed_pairs()
    logits = F.normalize(z_u, dim=1) @ F.normalize(z_e, dim=1).T / 0.1
    target = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    loss = info_nce(z_u, z_e, torch.eye(6, dtype=torch.bool), 0.1)
    assert loss.item() == pytest.approx(clip.item(), rel=1e-6)
    # Distinct instructions make the instruction level the episode level.
    distinct = positive_mask("instruction", None, torch.arange(6), None)
    assert info_nce(z_u, z_e, distinct, 0.1).item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("level", LEVELS)
def test_info_nce_is_symmetric(level):
    z_u, z_e = fixed_pairs()
    mask = positive_mask(level, EPISODE, INSTRUCTION, LABEL)
    forward = info_nce(z_u, z_e, mask, 0.1)
    swapped = info_nce(z_e, z_u, mask.T, 0.1)
    assert forward.item() == pytest.approx(swapped.item(), rel=1e-6)


def test_loss_reaches_its_minimum_on_identical_distinct_rows():
    z = 3.0 * torch.eye(4, 8)  # orthogonal rows; the scale must not matter (cosine)
    mask = torch.eye(4, dtype=torch.bool)
    assert info_nce(z, z.clone(), mask, 0.01).item() < 1e-6
    # With a large temperature the same perfect alignment still costs log(1 + 3 / e).
    assert info_nce(z, z.clone(), mask, 1.0).item() == pytest.approx(math.log(1 + 3 / math.e), rel=1e-5)
    # Misaligned partners cost much more.
    assert info_nce(z, z.roll(1, dims=0), mask, 0.01).item() > 50


def test_loss_is_float32_under_half_precision_inputs():
    z_u, z_e = fixed_pairs()
    loss = info_nce(z_u.half(), z_e.half(), torch.eye(6, dtype=torch.bool), 0.01)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_batch_of_one_raises():
    z = torch.randn(1, 4)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        info_nce(z, z, torch.ones(1, 1, dtype=torch.bool), 0.1)
    head = MirrorHead(MirrorConfig(dim=8), dim_u=4, dim_e=3)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        head(z, torch.randn(1, 3), EPISODE[:1], INSTRUCTION[:1], LABEL[:1])


def test_bad_shapes_raise():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(z, torch.randn(4, 5), torch.eye(4, dtype=torch.bool), 0.1)
    with pytest.raises(ValueError, match="positives must be"):
        info_nce(z, z, torch.eye(3, dtype=torch.bool), 0.1)


@pytest.mark.parametrize("level", ["instruction", "class"])
def test_single_group_batch_gives_zero_loss_and_zero_gradient(level):
    """Stated behaviour: with no negative in the batch the loss is 0, finite, with zero gradients."""
    head = MirrorHead(MirrorConfig(dim=8, positives=level, learnable_temperature=True), dim_u=4, dim_e=3)
    f_u = torch.randn(5, 4, requires_grad=True)
    f_e = torch.randn(5, 3, requires_grad=True)
    same = torch.zeros(5, dtype=torch.long)
    loss, metrics = head(f_u, f_e, torch.arange(5), same, same)
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert metrics["no_negatives"] == 1.0 and math.isnan(metrics["cos_neg"])
    loss.backward()
    for grad in (f_u.grad, f_e.grad, head.T_u.weight.grad, head.log_temperature.grad):
        assert grad is not None and torch.isfinite(grad).all() and not grad.any()


def test_contrastive_rows():
    assert contrastive_rows(positive_mask("class", None, None, LABEL)).all()
    assert not contrastive_rows(torch.ones(3, 3, dtype=torch.bool)).any()
    # A row without positives is left out too (only possible with a hand-made mask).
    mask = torch.eye(3, dtype=torch.bool)
    mask[1, 1] = False
    assert contrastive_rows(mask).tolist() == [True, False, True, True, False, True]


# --------------------------------------------------------------------------- head
def test_gradients_reach_both_maps_and_inputs():
    torch.manual_seed(0)
    head = MirrorHead(MirrorConfig(dim=16), dim_u=6, dim_e=4)
    f_u = torch.randn(6, 6, requires_grad=True)
    f_e = torch.randn(6, 4, requires_grad=True)
    loss, _ = head(f_u, f_e, EPISODE, INSTRUCTION, LABEL)
    loss.backward()
    for grad in (head.T_u.weight.grad, head.T_e.weight.grad, f_u.grad, f_e.grad):
        assert grad is not None and grad.abs().sum() > 0
    assert not hasattr(head, "log_temperature")


def test_learnable_temperature_gets_a_gradient_and_is_clamped():
    torch.manual_seed(0)
    head = MirrorHead(MirrorConfig(dim=16, temperature=0.1, learnable_temperature=True), dim_u=6, dim_e=4)
    assert head.temperature.item() == pytest.approx(0.1)
    assert "log_temperature" in dict(head.named_parameters())
    loss, metrics = head(torch.randn(6, 6), torch.randn(6, 4), EPISODE, INSTRUCTION, LABEL)
    loss.backward()
    assert head.log_temperature.grad is not None and head.log_temperature.grad.abs() > 0
    assert metrics["temperature"] == pytest.approx(0.1)
    with torch.no_grad():
        head.log_temperature.fill_(math.log(1e-4))
    assert head.temperature.item() == pytest.approx(0.01)


def test_head_loss_is_info_nce_of_its_embeddings():
    torch.manual_seed(0)
    head = MirrorHead(MirrorConfig(dim=16, positives="class", temperature=0.2), dim_u=6, dim_e=4)
    f_u, f_e = torch.randn(6, 6), torch.randn(6, 4)
    loss, metrics = head(f_u, f_e, EPISODE, INSTRUCTION, LABEL)
    z_u, z_e = head.embed(f_u, f_e)
    assert z_u.shape == z_e.shape == (6, 16)
    direct = info_nce(z_u, z_e, positive_mask("class", EPISODE, INSTRUCTION, LABEL), 0.2)
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    assert set(metrics) == {
        "loss", "temperature", "recall@1_u2e", "recall@1_e2u", "cos_pos", "cos_neg", "no_negatives"
    }  # fmt: skip
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["no_negatives"] == 0.0
    with pytest.raises(ValueError, match=r"f_u must be \(B, 6\)"):
        head.embed(torch.randn(6, 5), f_e)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "bad",
    [
        {"dim": 0},
        {"temperature": 0.0},
        {"temperature": 5.0, "learnable_temperature": True},
        {"positives": "task"},
        {"weight": -1.0},
        {"lr": 0.0},
    ],
)
def test_config_validates(bad):
    with pytest.raises(ValueError):
        MirrorConfig(**bad)


def test_config_defaults_docs_and_loading():
    cfg = MirrorConfig()
    assert (cfg.dim, cfg.temperature, cfg.positives, cfg.weight, cfg.lr) == (
        1024,
        0.1,
        "instruction",
        0.5,
        1e-4,
    )
    docs = field_docs(MirrorConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(MirrorConfig)} and all(docs.values())
    assert from_dict(MirrorConfig, {"positives": "episode", "temperature": 0.02}).positives == "episode"
    with pytest.raises(UserError, match="positives must be one of"):
        from_dict(MirrorConfig, {"positives": "task"})


# --------------------------------------------------------------------------- metrics
def test_recall_is_one_when_perfectly_aligned():
    z = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    recall = recall_at_k(z, 2.0 * z, ks=(1, 5))
    assert recall == {"u2e@1": 1.0, "u2e@5": 1.0, "e2u@1": 1.0, "e2u@5": 1.0}


def test_recall_is_near_chance_for_random_embeddings():
    g = torch.Generator().manual_seed(2)
    b = 400
    recall = recall_at_k(torch.randn(b, 32, generator=g), torch.randn(b, 32, generator=g), ks=(1, 10, 50))
    for k in (1, 10, 50):
        chance = chance_recall_at_k(b, k)
        assert chance == k / b
        # Binomial standard error at k = 50 is about 0.017.
        for direction in ("u2e", "e2u"):
            assert abs(recall[f"{direction}@{k}"] - chance) < 0.05


def test_recall_with_match_counts_any_positive():
    z_u = torch.eye(4)
    z_e = z_u[[1, 0, 3, 2]]  # each nearest item is the other row of the same class, not the partner
    classes = positive_mask("class", None, None, torch.tensor([0, 0, 1, 1]))
    assert recall_at_k(z_u, z_e, ks=(1,)) == {"u2e@1": 0.0, "e2u@1": 0.0}
    assert recall_at_k(z_u, z_e, ks=(1,), match=classes) == {"u2e@1": 1.0, "e2u@1": 1.0}
    assert recall_at_k(z_u, z_e, ks=(2, 9))["u2e@9"] == 1.0  # k past B is B


def test_chance_with_match():
    assert chance_recall_at_k(10, 3, torch.eye(10, dtype=torch.bool)) == pytest.approx(0.3)
    assert chance_recall_at_k(10, 1, torch.ones(10, 10, dtype=torch.bool)) == 1.0
    two = positive_mask("class", None, None, torch.tensor([0, 0, 1, 1]))
    assert chance_recall_at_k(4, 1, two) == pytest.approx(0.5)


def test_positive_negative_cosine_and_pair_alignment():
    z = torch.eye(4)
    cos = positive_negative_cosine(z, z, torch.eye(4, dtype=torch.bool))
    assert cos["pos"] == pytest.approx(1.0) and cos["neg"] == pytest.approx(0.0)
    scores = pair_alignment(z, torch.cat([z[:2], -z[2:]]))
    assert scores.shape == (4,)
    assert scores.tolist() == pytest.approx([1.0, 1.0, -1.0, -1.0])


def test_linear_cka():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))  # orthogonal 8 x 8
    wide, _ = torch.linalg.qr(torch.randn(16, 8, generator=g))  # 16 x 8, orthonormal columns
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 2.5 * x @ q + 7.0) == pytest.approx(1.0, abs=1e-10)  # rotate, scale, shift
    assert linear_cka(x, x @ wide.T) == pytest.approx(1.0, abs=1e-10)  # into a wider space
    assert linear_cka(x.numpy(), (x @ q).numpy()) == pytest.approx(1.0, abs=1e-10)
    # Not invariant to anisotropic scaling, and low for unrelated features.
    assert linear_cka(x, x * torch.tensor([10.0, 1, 1, 1, 1, 1, 1, 0.1])) < 0.9
    assert linear_cka(x, torch.randn(60, 12, generator=g)) < 0.5
    assert math.isnan(linear_cka(x, torch.ones(60, 3)))
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, x[:10])


def test_tsne_plot_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(4)
    centres = 5.0 * torch.randn(3, 16, generator=g)
    labels = torch.arange(3).repeat_interleave(10)  # (30,)
    z = centres[labels] + torch.randn(30, 16, generator=g)
    path = tsne_plot(z, labels, ["reach", "push", "pick-place"], tmp_path / "plots" / "z.png", title="Z")
    assert path == tmp_path / "plots" / "z.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert sorted(p.name for p in path.parent.iterdir()) == ["z.png"]  # no temporary file left
    # two sides (z_u, z_e), each with its own marker
    sides = tsne_plot(
        z,
        labels,
        ["reach", "push", "pick-place"],
        tmp_path / "sides.png",
        groups=[0, 1] * 15,
        group_names=["u", "e"],
    )
    assert sides.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="groups"):
        tsne_plot(z, labels, ["a", "b", "c"], tmp_path / "bad.png", groups=[0, 1])
