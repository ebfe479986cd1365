"""Evaluation: policy rollouts with confidence intervals, videos, and the recognizer as a judge.

- :mod:`.rollout`: :func:`~.rollout.evaluate_policy`, batched rollouts in parallel worker
  processes (each with a copy of the policy on a CPU), per task and overall success with
  Wilson intervals, per-episode records;
- :mod:`.envs`: the worker side (several environments per worker, errors become failed
  episodes);
- :mod:`.stats`: Wilson intervals, t intervals of means and of paired differences;
- :mod:`.video`: captioned rollout videos (MP4 or GIF), written atomically;
- :mod:`.judge`: the recognizer's validation accuracy and its verdict on the rollouts, and the
  per-episode alignment of the mirror head against success;
- :mod:`.report`: ``results.json`` and ``results.md``.

Only the statistics are imported here: the worker processes import :mod:`.envs` through this
package and must not pay for torch.
"""

from embodied.eval.stats import MeanInterval, mean_interval, paired_difference, t_quantile, wilson_interval

__all__ = ["MeanInterval", "mean_interval", "paired_difference", "t_quantile", "wilson_interval"]
