"""The mirror head: align the recognizer's (U) and the policy's (E) features in one space.

- :mod:`embodied.mirror.loss`: the symmetric InfoNCE and its positive levels.
- :mod:`embodied.mirror.head`: ``MirrorConfig`` and ``MirrorHead`` (``T_u``, ``T_e``).
- :mod:`embodied.mirror.metrics`: recall@k, retrieval over a gallery of episodes at every
  positive level, positive/negative cosine, linear CKA, per-pair alignment, t-SNE plots.
"""

from embodied.mirror.head import MirrorConfig, MirrorHead
from embodied.mirror.loss import LEVELS, contrastive_rows, info_nce, positive_mask
from embodied.mirror.metrics import (
    chance_recall_at_k,
    episode_means,
    gallery_retrieval,
    linear_cka,
    pair_alignment,
    positive_negative_cosine,
    recall_at_k,
    tsne_plot,
)

__all__ = [
    "LEVELS",
    "MirrorConfig",
    "MirrorHead",
    "chance_recall_at_k",
    "contrastive_rows",
    "episode_means",
    "gallery_retrieval",
    "info_nce",
    "linear_cka",
    "pair_alignment",
    "positive_mask",
    "positive_negative_cosine",
    "recall_at_k",
    "tsne_plot",
]
