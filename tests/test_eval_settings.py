"""The evaluation settings object: its checks, its one default convention, old benchmark markers
and presets read through it, the plan it makes, and training's rollouts through it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from embodied.config import from_dict, to_dict
from embodied.errors import UserError
from embodied.eval.settings import EvalSettings
from embodied.seeds import EVAL_SEED_START

ROOT = Path(__file__).resolve().parents[1]
OLD_MARKER = ROOT / "docs/results/bench_visual/finished/policy/seed0/bench.json"
"""A finished run of the visual benchmark, written when 0 stood for a default (horizon 0,
envs_per_worker 0) and before the protocol settings existed."""


# --------------------------------------------------------------------------- the object
@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"episodes": 0}, "episodes must be at least 1"),
        ({"tasks": []}, "tasks must name at least one task"),
        ({"horizon": 0}, "horizon (None: the default) must be in [1, 10000]"),
        ({"envs_per_worker": 0}, "envs_per_worker (None: the default) must be in [1, 256]"),
        ({"workers": -1}, "workers must be in [0, 256]"),
        ({"workers": 1000}, "workers must be in [0, 256]"),
        ({"seed_start": -1}, "seed_start must be at least 0"),
        ({"protocol_seed": -1}, "protocol_seed must be at least 0"),
        ({"clips_per_video": 0}, "clips_per_video must be at least 1"),
    ],
)
def test_settings_check_themselves(fields, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        EvalSettings(**fields)


def test_zero_as_a_default_is_read_as_none():
    """The one convention is None; files written when 0 meant the default still load."""
    old = from_dict(EvalSettings, {"horizon": 0, "envs_per_worker": 0, "workers": 0})
    assert (old.horizon, old.envs_per_worker, old.workers) == (None, None, 0)  # workers 0 is a count
    assert from_dict(EvalSettings, {"horizon": 30}).horizon == 30
    with pytest.raises(UserError, match="episodes must be at least 1"):
        from_dict(EvalSettings, {"episodes": 0}, "preset.yaml")


# --------------------------------------------------------------------------- the bench
def test_an_old_bench_marker_counts_as_finished_with_todays_settings():
    """A committed marker of the visual benchmark compares equal to what today's code makes of the
    same preset, through the same path as a rerun (bench.runner.run_one)."""
    from embodied.bench import load_preset
    from embodied.bench.runner import FREE_SETTINGS, _current, settings_of, train_config
    from embodied.train.checkpoint import config_differences

    marker = json.loads(OLD_MARKER.read_text())
    assert marker["settings"]["eval"]["horizon"] == 0 and "protocol" not in marker["settings"]["eval"]
    cfg = load_preset("visual")
    old = _current(marker["settings"], OLD_MARKER)
    assert old["eval"] == to_dict(cfg.eval)
    today = settings_of(cfg, train_config(cfg, marker["method"], marker["seed"]))
    assert config_differences(old, today, FREE_SETTINGS) == []
    # and a real difference still counts
    changed = load_preset("visual", ["eval.episodes=11"])
    diffs = config_differences(old, settings_of(changed, train_config(changed, "policy", 0)), FREE_SETTINGS)
    assert diffs == ["eval.episodes: 10 (checkpoint) vs 11"]


@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "configs/bench").glob("*.yaml")))
def test_every_bench_preset_loads_its_eval_section(preset):
    from embodied.bench import load_preset

    settings = load_preset(preset, ["data.paths=[demos]"]).eval  # tiny names none
    assert isinstance(settings, EvalSettings) and settings.seed_start >= EVAL_SEED_START
    assert settings.horizon is None or settings.horizon >= 1


def test_a_bench_evaluates_on_held_out_seeds_only():
    from embodied.bench import load_preset

    with pytest.raises(UserError, match="demonstration seeds"):
        load_preset("quick", ["eval.seed_start=5"])
    assert load_preset("quick", ["eval.horizon=0"]).eval.horizon is None  # the old spelling of the default


# --------------------------------------------------------------------------- the plan
def make_spec(tasks=("reach-v3", "drawer-close-v3")):
    from embodied.data.spec import DataSpec

    return DataSpec(
        obs_shapes={"robot_state": [4], "goal": [3]},
        action_dim=4,
        tasks=list(tasks),
        task_instructions=[0, 1],
        instructions=["reach the goal position", "close the drawer"],
    )


def test_the_plan_runs_seed_after_seed_on_environments_built_for_their_task():
    from embodied.eval.plan import plan_rollouts, resolve_target

    settings = EvalSettings(episodes=3, workers=2, envs_per_worker=1, horizon=20)
    spec = make_spec()
    target = resolve_target(settings, spec)
    assert (target.suite, target.tasks, target.observer) == ("metaworld", spec.tasks, "corner")
    plan = plan_rollouts(target, settings, (), None, spec)
    assert (plan.processes, plan.envs_per_worker, plan.num_envs, plan.horizon) == (2, 1, 2, 20)
    assert [(p.task, p.seed - EVAL_SEED_START) for p in plan.episodes] == [
        (t, i) for t in spec.tasks for i in range(3)
    ]
    assert [(p.task, p.seed - EVAL_SEED_START) for p in plan.run_order][:2] == [
        ("reach-v3", 0),
        ("drawer-close-v3", 0),
    ]
    # every wave keeps each environment on the task it was built for
    for plans, _ in plan.waves:
        assert [p.task for p in plans] == [b.task for b in plan.built]
    assert plan.position[("drawer-close-v3", EVAL_SEED_START + 1)] == 4
    with pytest.raises(UserError, match="not on push-v3"):
        resolve_target(EvalSettings(tasks=["push-v3"]), spec)


def test_settings_or_their_fields_not_both():
    from embodied.eval.rollout import evaluate_policy

    with pytest.raises(TypeError, match="not both"):
        evaluate_policy(None, make_spec(), ["reach-v3"], settings=EvalSettings())
    with pytest.raises(UserError, match="episodes must be at least 1"):
        evaluate_policy(None, make_spec(), ["reach-v3"], 0)


# --------------------------------------------------------------------------- training's rollouts
class Policy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


def test_rollout_metrics_runs_the_evaluator_through_the_settings():
    from embodied.train.rollouts import rollout_metrics

    calls = []

    def evaluator(policy, spec, settings):
        calls.append((settings, policy.training))
        torch.rand(3)  # an evaluator's draws do not move the training's random stream
        return {"success_rate": 0.25, "episodes": 4, "interrupted": False, "note": "left out"}

    policy, spec = Policy().train(), make_spec()
    state = torch.get_rng_state()
    metrics = rollout_metrics(evaluator, policy, spec, 2)
    assert metrics == {"success_rate": 0.25, "episodes": 4.0}
    (settings, training), *more = calls
    assert not more and training is False and policy.training  # in eval mode, then as it was
    assert settings == EvalSettings(tasks=spec.tasks, episodes=2, seed_start=EVAL_SEED_START)
    assert torch.equal(state, torch.get_rng_state())


def test_rollout_metrics_defaults_to_the_simulator(monkeypatch):
    import embodied.train.rollouts as rollouts
    from embodied.eval.results import build_results

    seen = []

    def evaluate_policy(policy, spec, **kwargs):
        seen.append(kwargs)
        return build_results(
            [], suite="metaworld", tasks=spec.tasks, episodes=1, seed_start=0, workers=1, protocol={}
        )

    monkeypatch.setattr(rollouts, "evaluate_policy", evaluate_policy)
    metrics = rollouts.rollout_metrics(None, Policy(), make_spec(), 1)
    assert list(seen[0]) == ["settings"] and seen[0]["settings"].episodes == 1
    assert metrics["env_steps"] == 0.0 and metrics["episodes_per_task"] == 1.0
