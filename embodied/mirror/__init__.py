"""The mirror head: align the recognizer's (U) and the policy's (E) features in one space.

- :mod:`embodied.mirror.config`: ``MirrorConfig`` and the positive levels (no torch);
- :mod:`embodied.mirror.loss`: the symmetric InfoNCE and its positive levels.
- :mod:`embodied.mirror.head`: ``MirrorHead`` (``T_u``, ``T_e``).
- :mod:`embodied.mirror.metrics`: recall@k, retrieval over a gallery of episodes at every
  positive level, positive/negative cosine, linear CKA, per-pair alignment, t-SNE plots.

The config is imported here; the rest (torch) on first use, so that reading a training config
(``embodied-train --help``) does not wait for torch.
"""

from embodied.mirror.config import LEVELS, MirrorConfig

_TORCH = {
    "MirrorHead": "head",
    "contrastive_rows": "loss",
    "info_nce": "loss",
    "positive_mask": "loss",
    "chance_recall_at_k": "metrics",
    "episode_means": "metrics",
    "gallery_retrieval": "metrics",
    "linear_cka": "metrics",
    "pair_alignment": "metrics",
    "positive_negative_cosine": "metrics",
    "recall_at_k": "metrics",
    "tsne_plot": "metrics",
}
"""The names that need torch, and their module."""


def __getattr__(name: str):
    if name not in _TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from embodied.mirror import head, loss, metrics

    return getattr({"head": head, "loss": loss, "metrics": metrics}[_TORCH[name]], name)


__all__ = ["LEVELS", "MirrorConfig", *_TORCH]
