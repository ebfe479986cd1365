"""Evaluation: policy rollouts with confidence intervals, videos, and the recognizer as a judge.

- :mod:`.settings`: :class:`~.settings.EvalSettings`, the one settings object of an evaluation
  (embodied-eval, the benchmark, training's rollouts), and :class:`~.settings.Videos`;
- :mod:`.rollout`: :func:`~.rollout.evaluate_policy`, batched rollouts in parallel worker
  processes (each with a copy of the policy on a CPU), from its two parts:
- :mod:`.plan`: what is rolled out, resolved once (suite, tasks, observer camera, the protocol's
  episodes), and which episode runs where, wave after wave;
- :mod:`.runners`: the pool of environments and the two runners (the policy in the workers, or
  in this process in lock-step);
- :mod:`.checkpoint`: :func:`~.checkpoint.evaluate_checkpoint`, the one path from a run to its
  numbers (rollouts, the recognizer's report, the judge, videos);
- :mod:`.protocol`: which episodes run (embodied's seeds, or a suite's own protocol);
- :mod:`.waves`: the lock-step waves the rollouts run in, and the policy workers;
- :mod:`.results`: per-episode records, per task and overall success with Wilson intervals, and
  the collector that gathers the episodes as they end;
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
