"""The alignment loss: a symmetric InfoNCE between the embeddings of U and E.

Row i of ``z_u`` (B, D) and row i of ``z_e`` (B, D) come from the same episode (a paired
batch, design.md). ``positives[i, j]`` says whether ``z_u[i]`` and ``z_e[j]`` count as a
positive pair; which pairs do is the *positive level* of the paper's ablation:

- ``episode``: the same episode. With distinct episodes in the batch this is the diagonal,
  one positive per row, and the loss is the standard InfoNCE: cross-entropy over each row of
  the similarity matrix with the partner as the target (van den Oord et al. 2018,
  https://arxiv.org/abs/1807.03748; symmetric as in CLIP, https://arxiv.org/abs/2103.00020).
- ``instruction``: the same language instruction (the paper's default and best).
- ``class``: the same task class.

With several positives per row the loss is the multi-positive form of supervised
contrastive learning, Khosla et al. 2020, eq. 2, "L_out" (https://arxiv.org/abs/2004.11362):
each row's loss is the average of ``-log p`` over that row's positives, where ``p`` is the
softmax over the whole row. Its minimum for a row with P positives is ``log P``, not 0. With one
positive per row it reduces exactly to the standard InfoNCE above.

Similarity is cosine (both sides L2-normalised) divided by the temperature tau.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embodied.mirror.config import LEVELS


def positive_mask(
    level: str,
    episode_id: torch.Tensor | None,
    instruction_id: torch.Tensor | None,
    label: torch.Tensor | None,
) -> torch.Tensor:
    """(B, B) bool: ``[i, j]`` is True when ``z_u[i]`` and ``z_e[j]`` are a positive pair.

    Rows i and j are positive when they share the id of ``level`` (``episode_id``,
    ``instruction_id`` or ``label``, each (B,) int). The diagonal is always positive, since row i
    of both sides comes from one episode. At the episode level the mask is the diagonal whenever
    the batch's episodes are distinct; two windows of one episode in a batch are positives of
    each other rather than false negatives. Only the id of the chosen level is needed; the
    others may be None.
    """
    ids = {"episode": episode_id, "instruction": instruction_id, "class": label}
    if level not in ids:
        raise ValueError(f"unknown positive level {level!r}; one of {', '.join(LEVELS)}")
    key = ids[level]
    if key is None:
        name = {"episode": "episode_id", "instruction": "instruction_id", "class": "label"}[level]
        raise ValueError(f"positive level {level!r} needs {name}, got None")
    key = torch.as_tensor(key).reshape(-1)  # (B,)
    mask = key[:, None] == key[None, :]  # (B, B)
    return mask | torch.eye(len(key), dtype=torch.bool, device=key.device)


def contrastive_rows(positives: torch.Tensor) -> torch.Tensor:
    """(2B,) bool: which rows (u->e rows, then e->u rows) have a positive and a negative.

    Only those rows carry a contrastive signal and enter :func:`info_nce`.
    """
    pos = positives.to(torch.bool)
    rows = torch.cat([pos, pos.T])  # (2B, B): u->e rows, then e->u rows
    return rows.any(dim=1) & (~rows).any(dim=1)


def info_nce(
    z_u: torch.Tensor,
    z_e: torch.Tensor,
    positives: torch.Tensor,
    temperature: float | torch.Tensor,
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between ``z_u`` (B, D) and ``z_e`` (B, D); a scalar.

    Each ``z_u[i]`` must pick out its positives among all ``z_e`` (u->e) and each ``z_e[j]`` its
    positives among all ``z_u`` (e->u); the two directions are averaged. See the module doc for
    the form with several positives per row.

    Rows without a negative (every column positive, e.g. a batch of one task at the ``class``
    level) carry no contrastive signal; their only gradient would push all similarities of
    the row to be equal. They are left out of the average, as are rows without a positive. If
    no row is left, the loss is exactly 0 with zero gradients (still attached to the graph, so
    ``backward()`` runs); :class:`~embodied.mirror.head.MirrorHead` reports this in its
    ``no_negatives`` metric. The result is never NaN for finite inputs.

    A batch of one pair has nothing to contrast with and raises ValueError.
    """
    if z_u.dim() != 2 or z_e.dim() != 2:
        raise ValueError(f"info_nce wants (B, D) embeddings, got {tuple(z_u.shape)} and {tuple(z_e.shape)}")
    if z_u.shape != z_e.shape:
        raise ValueError(f"z_u {tuple(z_u.shape)} and z_e {tuple(z_e.shape)} must have the same shape")
    b = z_u.shape[0]
    if b < 2:
        raise ValueError(
            f"the alignment loss needs a batch of at least 2 pairs, got {b}: "
            "a single pair has no negative to contrast against"
        )
    if tuple(positives.shape) != (b, b):
        raise ValueError(f"positives must be ({b}, {b}) for a batch of {b}, got {tuple(positives.shape)}")

    # Compute in float32 even under autocast: exp(cos / 0.01) overflows half precision.
    z_u = F.normalize(z_u.float(), dim=-1)  # (B, D)
    z_e = F.normalize(z_e.float(), dim=-1)  # (B, D)
    logits = z_u @ z_e.T / temperature  # (B, B): [i, j] = cos(z_u[i], z_e[j]) / tau
    pos = positives.to(device=logits.device, dtype=torch.bool)

    rows = torch.cat([logits, logits.T])  # (2B, B): u->e rows, then e->u rows
    row_pos = torch.cat([pos, pos.T])  # (2B, B)
    log_p = rows.log_softmax(dim=1)  # (2B, B)
    n_pos = row_pos.sum(dim=1)  # (2B,)
    per_row = -torch.where(row_pos, log_p, 0.0).sum(dim=1) / n_pos.clamp_min(1)  # (2B,)
    keep = contrastive_rows(pos)  # (2B,)
    if not keep.any():
        return logits.sum() * 0.0
    # With the same rows kept in both directions (any symmetric mask) this is the mean of the
    # u->e and e->u losses.
    return per_row[keep].mean()
