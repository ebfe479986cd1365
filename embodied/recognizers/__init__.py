"""Recognizers (U, action understanding): which task and instruction a clip shows.

One registry, :data:`RECOGNIZERS`, keyed by the name used in configs (the settings of each,
torch-free, in :mod:`.config`):

- ``conv3d``: a small R(2+1)D residual network (:mod:`.conv3d`);
- ``video_transformer``: tubelet tokens with divided space-time attention (:mod:`.video_transformer`).

The contract (:class:`Recognizer`, in :mod:`.base`): ``forward(video)`` -> class and
instruction logits, ``loss(batch)``, ``predict(video)``, ``features(video)`` at a configurable
tap; :mod:`.inference` is the one place a recognizer is run for inference: on clips
(:func:`~.inference.clip_probabilities`) and on a whole video (:func:`~.inference.video_probabilities`,
:func:`classify_video`), which the evaluation report, the rollout judge and `--classify` share.
"""

from embodied.recognizers.config import (
    RECOGNIZERS,
    Conv3DConfig,
    RecognizerConfig,
    VideoTransformerConfig,
)

_TORCH = ("Recognizer", "build_recognizer", "classify_video")
"""The names that need torch: imported, with every model (their builders), on first use, so that
the configs above are read (``embodied-train --help``) without torch."""


def __getattr__(name: str):
    if name not in _TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from embodied.recognizers import base, conv3d, inference, video_transformer  # noqa: F401  (the builders)

    return getattr(inference if name == "classify_video" else base, name)


__all__ = [
    "RECOGNIZERS",
    "Conv3DConfig",
    "Recognizer",
    "RecognizerConfig",
    "VideoTransformerConfig",
    "build_recognizer",
    "classify_video",
]
