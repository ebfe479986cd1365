"""Validation: the losses on a fixed subset of the valid split and, for joint and probe runs,
the alignment metrics (batch retrieval, the fixed episode gallery, CKA, t-SNE)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from embodied import keys as K
from embodied.data.reader import DemoDataset
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.mirror import (
    chance_recall_at_k,
    episode_means,
    gallery_retrieval,
    linear_cka,
    pair_alignment,
    positive_mask,
    positive_negative_cosine,
    recall_at_k,
    tsne_plot,
)
from embodied.train.config import TrainConfig
from embodied.train.objective import TrainModule
from embodied.train.runlog import (
    Averager,
)
from embodied.train.sampling import fixed_subset
from embodied.train.step import to_device

RECALL_KS = (1, 5)
"""Recall@k reported on the validation pairs (joint and probe)."""


# --------------------------------------------------------------------------- validation
def _compute_batches(module: TrainModule, dataset: DemoDataset, indices, batch_size: int, device, autocast):
    """(batch, metrics, features) of ``module.compute`` over ``indices`` in batches."""
    for lo in range(0, len(indices), batch_size):
        batch = to_device(dataset.__getitems__(indices[lo : lo + batch_size]), device)
        with autocast():
            _, metrics, features = module.compute(batch)
        yield batch, metrics, features


@torch.no_grad()
def validate(
    module: TrainModule,
    dataset: DemoDataset,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    autocast,
    tsne: Path | None = None,
    spec: DataSpec | None = None,
    gallery: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean metrics over fixed validation batches; with a mirror head, alignment over all the pairs.

    Besides the batch means (``loss``, ``policy/*``, ``recognizer/*``, ``mirror/*``), joint and
    probe runs get, over every validation pair at once (see :func:`alignment_metrics`): pair
    Recall@1/5 both ways (``recall@1_u2e``, ...) and their chance levels, ``cos_pos``/``cos_neg``,
    ``pair_cos`` and the linear CKA of the raw features. With ``gallery`` (sample indices,
    :func:`gallery_indices`) they also get ``gallery/*`` (gallery Recall@1): retrieval among one
    episode-averaged pair per validation episode at every positive level, with chance levels (see
    :func:`~embodied.mirror.gallery_retrieval`); with ``tsne`` a path, that gallery's ``z_u``
    and ``z_e`` are drawn there, coloured by class and marked by instruction (``spec``'s names).
    """
    was_training = module.training
    module.eval()
    avg = Averager()
    feats_u, feats_e, ids = [], [], {K.EPISODE: [], K.INSTRUCTION: [], K.LABEL: []}
    shown = {K.EPISODE: [], K.INSTRUCTION: [], K.LABEL: []}
    gallery_u, gallery_e = [], []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for batch, metrics, features in _compute_batches(
                module, dataset, indices, batch_size, device, autocast
            ):
                avg.add(metrics, weight=len(batch[K.LABEL]))
                if features is not None:
                    feats_u.append(features[0].float())
                    feats_e.append(features[1].float())
                    for k in ids:
                        ids[k].append(batch[k])
            if feats_u and gallery is not None:
                for batch, _, features in _compute_batches(
                    module, dataset, gallery, batch_size, device, autocast
                ):
                    gallery_u.append(features[0].float())
                    gallery_e.append(features[1].float())
                    for k in shown:
                        shown[k].append(batch[k])
    finally:
        module.train(was_training)
    result = avg.mean()
    if feats_u:
        mirror = module.models["mirror"]
        f_u, f_e = torch.cat(feats_u), torch.cat(feats_e)  # (N, D_u), (N, D_e): the raw features
        z_u, z_e = mirror.embed(f_u, f_e)  # (N, dim) each
        ids = {k: torch.cat(v) for k, v in ids.items()}
        match = positive_mask(mirror.config.positives, ids[K.EPISODE], ids[K.INSTRUCTION], ids[K.LABEL])
        result |= alignment_metrics(f_u, f_e, z_u, z_e, match)
    if gallery_u:
        shown = {k: torch.cat(v).cpu() for k, v in shown.items()}
        z_u, z_e = mirror.embed(torch.cat(gallery_u), torch.cat(gallery_e))  # (G, dim) each
        m_u, episodes = episode_means(z_u, shown[K.EPISODE])  # (E, dim), (E,)
        m_e, _ = episode_means(z_e, shown[K.EPISODE])
        first = torch.searchsorted(shown[K.EPISODE], episodes)  # gallery rows are in episode order
        instruction, label = shown[K.INSTRUCTION][first], shown[K.LABEL][first]  # (E,) each
        if len(episodes) > 1:
            result |= {f"gallery/{k}": v for k, v in gallery_retrieval(m_u, m_e, instruction, label).items()}
        if tsne is not None and len(episodes) >= 2:
            tsne_plot(
                torch.cat([m_u, m_e]),  # (2E, dim)
                torch.cat([label, label]),  # (2E,)
                spec.classes if spec else (),
                tsne,
                title=f"shared space: z_u and z_e of {len(episodes)} validation episodes (mean of each)",
                groups=np.repeat([0, 1], len(episodes)),
                group_names=["z_u (recognizer)", "z_e (policy)"],
                instructions=torch.cat([instruction, instruction]),
                instruction_names=spec.instructions if spec else (),
            )
    return result


GALLERY_STEPS = 8
"""Steps of each validation episode whose pairs, averaged, are its entry in the probe's gallery."""


def gallery_indices(dataset: DemoDataset, steps: int = GALLERY_STEPS) -> np.ndarray:
    """Sample indices of ``steps`` evenly spaced steps of every episode (all of a shorter one),
    in episode order: the fixed gallery of :func:`validate`, independent of seeds and batches."""
    out = []
    for first, length in zip(dataset.ep_start, dataset.ep_len, strict=True):
        t = np.unique(np.linspace(0, length - 1, min(steps, length)).round().astype(np.int64))
        out.append(first + t)  # sample index of (episode, t): the samples are episodes back to back
    return np.concatenate(out)


def alignment_metrics(
    f_u: torch.Tensor, f_e: torch.Tensor, z_u: torch.Tensor, z_e: torch.Tensor, match: torch.Tensor
) -> dict[str, float]:
    """How aligned the N validation pairs are, all at once (row i of each side from one episode).

    - ``recall@{1,5}_{u2e,e2u}``: retrieval among all N, a hit on any positive of ``match``
      (the configured level), against ``chance@{1,5}``, a random ranking's expectation;
    - ``cos_pos`` / ``cos_neg``: mean cosine in the shared space of positive / negative pairs
      (NaN, logged as null, when there is none);
    - ``pair_cos``: mean cosine of each pair with its own partner (the per-episode score);
    - ``cka``: linear CKA of the raw features ``f_u`` (N, D_u) and ``f_e`` (N, D_e), before
      ``T_u``, ``T_e``: the alignment the two models hold by themselves;
    - ``pairs``: N.
    """
    recall = recall_at_k(z_u, z_e, ks=RECALL_KS, match=match)
    result = {f"recall@{k}_{d}": recall[f"{d}@{k}"] for k in RECALL_KS for d in ("u2e", "e2u")}
    result |= {f"chance@{k}": chance_recall_at_k(len(z_u), k, match.cpu()) for k in RECALL_KS}
    cos = positive_negative_cosine(z_u, z_e, match)
    result |= {"cos_pos": cos["pos"], "cos_neg": cos["neg"]}
    result["pair_cos"] = pair_alignment(z_u, z_e).mean().item()
    result["cka"] = linear_cka(f_u, f_e) if len(f_u) > 1 else math.nan
    result["pairs"] = float(len(z_u))
    return result


def validation_indices(dataset: DemoDataset, cfg: TrainConfig) -> np.ndarray:
    """A fixed subset of whole batches (a lone pair teaches InfoNCE nothing)."""
    n = len(dataset)
    if cfg.objective.contrastive and n < 2:
        raise UserError(
            f"the valid split holds {n} pair; InfoNCE needs at least 2 (val_every=0 trains without)"
        )
    per = min(cfg.data.batch_size, n)
    count = min(cfg.val_batches * per, (n // per) * per)
    return fixed_subset(n, count, cfg.seed)
