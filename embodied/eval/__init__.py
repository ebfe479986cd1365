"""Evaluation: policy rollouts with confidence intervals, videos, and the recognizer as a judge.

- :mod:`.rollout`: :func:`~.rollout.evaluate_policy`, batched rollouts in parallel worker
  processes (each with a copy of the policy on a CPU);
- :mod:`.waves`: the lock-step waves the rollouts run in, and the policy workers;
- :mod:`.results`: per-episode records, per task and overall success with Wilson intervals;
- :mod:`.pool`: the worker processes, several environments each;
- :mod:`.envs`: one environment of an evaluation (errors become failed episodes);
- :mod:`.recognition`: the recognizer's report on validation videos (clip and video accuracy,
  early recognition, confusion);
- :mod:`.classify`: a recognizer's verdict on any video file or frames (a rollout's);
- :mod:`.judge`: the recognizer's validation accuracy and its verdict on the rollouts, and the
  per-episode alignment of the mirror head against success;
- :mod:`.report`: ``results.json`` and ``results.md``.

The statistics (:mod:`embodied.stats`) and the video writer (:mod:`embodied.video`) live below
every package, since data inspection and the benchmark use them too. Nothing is imported here:
the worker processes import :mod:`.pool` and :mod:`.envs` through this package and must not pay for torch.
"""
