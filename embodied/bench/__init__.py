"""``embodied-bench``: the paper's comparison on the same demonstrations and seeds.

For every training seed: the policy alone, the recognizer alone, both trained with the mirror
head (joint), and the probe of the separately trained pair against random-initialised copies.
Each trained policy is rolled out on held-out seeds, each recognizer scored on the validation
demonstrations; per method the mean over seeds with a 95 % interval, and per seed the paired
difference mirror - baseline (design.md, "Benchmark protocol").

- :mod:`.config`: :class:`BenchConfig`, the presets in ``configs/bench/``;
- :mod:`.grid`: :func:`run_bench`, every (method, seed) of a preset and the report, resumable;
- :mod:`.runner`: one run: its training config, training and evaluation, its marker;
- :mod:`.launchers`, :mod:`.slurm`: where the runs go (here, several at once, SLURM jobs);
- :mod:`.aggregate`: means, intervals and paired differences;
- :mod:`.report`, :mod:`.plots`: ``results.json``, ``results.md`` and the PNGs.
"""

from embodied.bench.config import METHODS, BenchConfig, load_preset


def __getattr__(name: str):
    """:func:`run_bench` on first use: the grid imports training and evaluation (torch, the
    simulators), which reading a preset (``embodied-bench --help``) must not wait for."""
    if name == "run_bench":
        from embodied.bench.grid import run_bench

        return run_bench
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "BenchConfig", "load_preset", "run_bench"]
