"""Recognizers (U, action understanding): which task and instruction a clip shows.

One registry, :data:`RECOGNIZERS`, keyed by the name used in configs:

- ``conv3d``: a small R(2+1)D residual network (:mod:`.conv3d`);
- ``video_transformer``: tubelet tokens with divided space-time attention (:mod:`.video_transformer`).

The contract (:class:`Recognizer`, in :mod:`.base`): ``forward(video)`` -> class and
instruction logits, ``loss(batch)``, ``predict(video)``, ``features(video)`` at a configurable
tap; :mod:`.inference` is the one place a recognizer is run for inference: on clips
(:func:`~.inference.clip_probabilities`) and on a whole video (:func:`~.inference.video_probabilities`,
:func:`classify_video`), which the evaluation report, the rollout judge and `--classify` share.
"""

from embodied.recognizers import conv3d, video_transformer  # noqa: F401  (register the models)
from embodied.recognizers.base import RECOGNIZERS, Recognizer, RecognizerConfig, build_recognizer
from embodied.recognizers.conv3d import Conv3DConfig
from embodied.recognizers.inference import classify_video
from embodied.recognizers.video_transformer import VideoTransformerConfig

__all__ = [
    "RECOGNIZERS",
    "Conv3DConfig",
    "Recognizer",
    "RecognizerConfig",
    "VideoTransformerConfig",
    "build_recognizer",
    "classify_video",
]
