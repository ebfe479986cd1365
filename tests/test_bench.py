"""embodied-bench (aggregation, the tiny preset end to end, resume) and the evaluation's env pool.

The tiny preset trains every method for 2 steps on the shared demonstration fixture and rolls
each policy out for 10 steps in process: its numbers mean nothing, its files must be right.
The worker processes of the pool tests import this module, so its top level imports no torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from embodied.errors import UserError
from embodied.seeds import EVAL_SEED_START

S = EVAL_SEED_START
T975_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom (3 seeds)


# --------------------------------------------------------------------------- aggregation
def _runs(success: dict[str, list[float]], video: dict[str, list[float]]) -> dict:
    runs: dict = {}
    for method, values in success.items():
        for seed, v in enumerate(values):
            if v is not None:
                runs.setdefault(method, {})[seed] = {"success": {"overall": v, "tasks": {"a": v}}}
    for method, values in video.items():
        for seed, v in enumerate(values):
            runs.setdefault(method, {}).setdefault(seed, {})["recognition"] = {
                "video": v,
                "early": {"0.5": v},
            }
    return runs


def test_aggregate_means_intervals_and_paired_differences_by_hand():
    from embodied.bench.aggregate import aggregate, paired

    runs = _runs(
        success={"policy": [0.4, 0.5, 0.6], "joint": [0.5, 0.7, 0.6]},
        video={"recognizer": [0.8, 0.9, 1.0], "joint": [0.9, 0.9, 1.0]},
    )
    summary, diff = aggregate(runs), paired(runs)

    s = summary["success"]["policy"]["overall"]  # mean 0.5, std 0.1
    half = T975_2 * 0.1 / math.sqrt(3)
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert (s["low"], s["high"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert s["values"] == [0.4, 0.5, 0.6] and s["seeds"] == [0, 1, 2]
    assert summary["success"]["policy"]["tasks/a"]["mean"] == pytest.approx(0.5)

    # joint - policy per seed: 0.1, 0.2, 0.0 -> mean 0.1, std 0.1
    d = diff["success"]
    assert (d["treatment"], d["baseline"]) == ("joint", "policy")
    m = d["metrics"]["overall"]
    assert m["mean"] == pytest.approx(0.1) and m["values"] == pytest.approx([0.1, 0.2, 0.0])
    assert (m["low"], m["high"]) == pytest.approx((0.1 - half, 0.1 + half))

    # The recognizer's intervals leave [0, 1] unclipped (0.9 +- 0.248): clipped to the range.
    r = summary["recognition"]["recognizer"]["video"]
    assert r["mean"] == pytest.approx(0.9) and r["high"] == 1.0 and r["low"] == pytest.approx(0.9 - half)
    # joint - recognizer: 0.1, 0.0, 0.0 -> mean 1/30
    e = diff["recognition"]["metrics"]["early/0.5"]
    assert e["mean"] == pytest.approx(1 / 30) and e["n"] == 3


def test_paired_difference_uses_only_seeds_both_finished():
    from embodied.bench.aggregate import aggregate, paired

    runs = _runs(success={"policy": [0.2, 0.4, None], "joint": [0.3, 0.6, 0.9]}, video={})
    d = paired(runs)["success"]["metrics"]["overall"]
    assert d["seeds"] == [0, 1] and d["values"] == pytest.approx([0.1, 0.2])
    one = aggregate(_runs(success={"policy": [0.7]}, video={}))["success"]["policy"]["overall"]
    assert one["mean"] == pytest.approx(0.7) and one["low"] is None and one["high"] is None  # one seed


# --------------------------------------------------------------------------- presets
def test_presets_load_and_compare_alike():
    from embodied.bench import load_preset
    from embodied.bench.runner import check_comparable, train_config

    for name in ("quick", "mt10", "mt10_lowdata", "large"):
        cfg = load_preset(name)
        check_comparable(cfg)
        assert cfg.seeds >= 3  # the protocol's minimum for a claim
        probe = train_config(cfg, "probe_random", 2)
        assert probe.mode == "probe" and probe.probe.init == "random" and probe.seed == 2
        assert probe.probe.policy_ckpt.endswith("policy/seed2")
        assert train_config(cfg, "joint", 1).rollout_every == 0
    low = load_preset("mt10_lowdata")  # every run, the probe included, on the same 10 demos per task
    assert {train_config(low, m, 0).data.max_demos for m in ("policy", "recognizer", "joint", "probe")} == {
        10
    }


def test_incomparable_methods_are_refused():
    from embodied.bench import load_preset
    from embodied.bench.runner import check_comparable
    from embodied.errors import UserError

    cfg = load_preset("quick", ["joint.overrides=[policy.hidden_dim=512]"])
    with pytest.raises(UserError, match="joint and policy runs would not compare: policy.hidden_dim"):
        check_comparable(cfg)


def test_cli_user_errors_are_one_line(capsys, tmp_path):
    from embodied.cli.bench import main

    assert main(["--preset", str(tmp_path / "missing.yaml")]) == 2
    assert main(["--preset", "quick", "nonsense=1"]) == 2
    assert main(["--preset", "tiny", "--out", str(tmp_path / "b")]) == 2  # tiny needs data.paths
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "unknown key 'nonsense'" in err[1] and "paths must name" in err[2]


# --------------------------------------------------------------------------- the tiny bench
@pytest.fixture(scope="module")
def tiny_bench(demo_dir, tmp_path_factory):
    from embodied.bench import load_preset, run_bench

    out = tmp_path_factory.mktemp("bench")
    cfg = load_preset("tiny", [f"data.paths=[{demo_dir}]", f"out={out}"])
    first = run_bench(cfg)
    return cfg, out, first


def test_tiny_bench_writes_well_formed_results(tiny_bench, demo_tasks):
    from embodied.bench.config import METHODS

    cfg, out, first = tiny_bench
    assert sorted(first["ran"]) == sorted((m, s) for m in METHODS for s in (0, 1)) and not first["skipped"]
    data = json.loads((out / "results.json").read_text())  # strict JSON: no NaN
    assert data["format"] == "embodied-bench-results" and data["complete"] is True
    assert data["tasks"] == sorted(demo_tasks) and data["seeds"] == [0, 1]
    assert set(data["runs"]) == set(METHODS) and all(set(r) == {"0", "1"} for r in data["runs"].values())

    success = data["summary"]["success"]
    assert set(success) == {"policy", "joint"}
    assert set(success["joint"]) == {"overall", *(f"tasks/{t}" for t in demo_tasks)}
    for entry in success["policy"].values():
        assert entry["n"] == 2 and len(entry["values"]) == 2 and 0.0 <= entry["mean"] <= 1.0
    recognition = data["summary"]["recognition"]["recognizer"]
    assert {"video", "clip", "early/0.1", "early/1.0"} <= set(recognition)
    assert set(data["summary"]["alignment"]) == {"probe", "probe_random"}
    for family, (a, b) in {"success": ("joint", "policy"), "recognition": ("joint", "recognizer")}.items():
        pair = data["paired"][family]
        assert (pair["treatment"], pair["baseline"]) == (a, b)
        runs = data["runs"]
        key = "overall" if family == "success" else "video"
        expected = [
            runs[a][s]["metrics"][family][key] - runs[b][s]["metrics"][family][key] for s in ("0", "1")
        ]
        assert pair["metrics"][key]["values"] == pytest.approx(expected)
    gallery = {
        f"recall@1_{level}_{d}" for level in ("episode", "instruction", "class") for d in ("u2e", "e2u")
    }
    assert set(data["paired"]["alignment"]["metrics"]) >= gallery
    probe = data["summary"]["alignment"]["probe"]
    assert probe["gallery"]["mean"] == 2 and probe["chance@1_episode"]["mean"] == pytest.approx(0.5)
    # power: every paired difference carries the half-width of its interval
    assert data["paired"]["success"]["metrics"]["overall"]["half_width"] >= 0

    md = (out / "results.md").read_text()
    for heading in (
        "## Headline",
        "## Manipulation success",
        "## Action recognition",
        "### Early recognition",
        "## Spontaneous",
    ):
        assert heading in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert any(r.startswith("| **overall** |") for r in rows)
    assert all(any(r.startswith(f"| {t} |") for r in rows) for t in demo_tasks)

    plots = ["success.png", "recognition.png", "early_recognition.png", "probe_recall.png", "tsne_joint.png"]
    assert set(plots) <= set(data["plots"])
    for name in plots:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")) and not list(out.glob("**/.*.tmp"))  # atomic writes left nothing

    for method in METHODS:  # eval seeds are held out and the same for every run
        marker = json.loads((out / method / "seed0" / "bench.json").read_text())
        if "rollouts" in marker["details"]:
            assert marker["details"]["rollouts"]["episodes"] == 2 * len(demo_tasks)
        assert marker["settings"]["eval"]["seed_start"] == S


def test_rerun_skips_finished_runs(tiny_bench):
    from embodied.bench import run_bench

    cfg, out, first = tiny_bench
    markers = sorted(out.glob("*/seed*/bench.json"))
    assert len(markers) == 10
    stamps = {p: p.stat().st_mtime_ns for p in markers}
    checkpoints = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/checkpoints/last.pt")}
    again = run_bench(cfg)
    assert again["ran"] == [] and sorted(again["skipped"]) == sorted(first["ran"])
    assert {p: p.stat().st_mtime_ns for p in markers} == stamps  # neither evaluated
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints  # nor trained again
    assert again["results"]["summary"] == first["results"]["summary"]
    # a shard of the seeds touches only its own runs, and still reports every finished one
    shard = run_bench(cfg, only_seeds=[1])
    assert shard["ran"] == [] and {s for _, s in shard["skipped"]} == {1}
    assert shard["results"]["summary"] == first["results"]["summary"]


def test_a_shard_of_methods_touches_only_its_runs(tiny_bench):
    from embodied.bench import run_bench

    cfg, _, first = tiny_bench
    shard = run_bench(cfg, only_methods=["probe", "joint"], only_seeds=[1])
    assert shard["ran"] == [] and shard["skipped"] == [("joint", 1), ("probe", 1)]  # the bench's order
    assert shard["results"]["summary"] == first["results"]["summary"]
    with pytest.raises(UserError, match="method 'probes' is not one of the bench's runs"):
        run_bench(cfg, only_methods=["probes"])


def test_a_shard_names_seeds_of_the_preset(tiny_bench):
    from embodied.bench import run_bench
    from embodied.errors import UserError

    cfg, _, _ = tiny_bench
    with pytest.raises(UserError, match="seed 2 is not one of the preset's training seeds 0..1"):
        run_bench(cfg, only_seeds=[0, 2])


def test_finished_run_with_other_settings_is_refused(tiny_bench):
    import dataclasses

    from embodied.bench import run_bench
    from embodied.errors import UserError

    cfg, out, _ = tiny_bench
    changed = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, episodes=3))
    with pytest.raises(UserError, match=r"policy/seed0 holds a finished run made with other settings"):
        run_bench(changed)
    # Settings that do not change the numbers (worker count) do not count.
    faster = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, workers=2))
    assert run_bench(faster)["ran"] == []


def test_moved_bench_folder_keeps_its_finished_runs(tiny_bench, tmp_path):
    import dataclasses
    import shutil

    from embodied.bench import run_bench

    cfg, out, _ = tiny_bench
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    assert run_bench(dataclasses.replace(cfg, out=str(moved)))["ran"] == []


def test_an_interrupted_evaluation_leaves_the_run_unfinished(tiny_bench, tmp_path, monkeypatch):
    """Ctrl-C during a run's rollouts stops the bench; the run gets no marker (it is evaluated
    again on the rerun), instead of counting the few episodes finished as its result."""
    import dataclasses
    import shutil

    import embodied.eval.checkpoint as evaluation
    from embodied.bench.runner import MARKER, run_one
    from embodied.data.identity import dataset_identity
    from embodied.eval.rollout import EvaluationInterrupted

    cfg, out, _ = tiny_bench
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    (moved / "policy" / "seed0" / MARKER).unlink()

    def interrupted(*args, **kwargs):
        raise EvaluationInterrupted(None)

    monkeypatch.setattr(evaluation, "evaluate_policy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_one(dataclasses.replace(cfg, out=str(moved)), "policy", 0, dataset_identity(cfg.data.paths))
    assert not (moved / "policy" / "seed0" / MARKER).exists()


def test_a_field_added_since_a_run_finished_takes_its_default(tiny_bench, tmp_path):
    import dataclasses
    import shutil

    from embodied.bench import run_bench

    cfg, out, _ = tiny_bench
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for path in old.glob("*/seed*/bench.json"):  # as written before data.max_demos existed
        marker = json.loads(path.read_text())
        del marker["settings"]["train"]["data"]["max_demos"]
        path.write_text(json.dumps(marker))
    assert run_bench(dataclasses.replace(cfg, out=str(old)))["ran"] == []
    changed = dataclasses.replace(
        cfg,
        out=str(old),
        policy=dataclasses.replace(cfg.policy, overrides=[*cfg.policy.overrides, "data.max_demos=1"]),
    )
    with pytest.raises(UserError, match=r"data.max_demos: 0 .* vs 1"):
        run_bench(changed)


def test_report_only_rewrites_the_results(tiny_bench):
    from embodied.cli.bench import main

    cfg, out, _ = tiny_bench
    (out / "results.md").unlink()
    argv = ["--preset", "tiny", f"data.paths={cfg.data.paths}", "--out", str(out), "--report-only"]
    assert main(argv) == 0
    assert (out / "results.md").exists()


def test_ablations_run_as_overrides_of_the_joint_run(tiny_bench, tmp_path):
    import dataclasses
    import shutil

    from embodied.bench import run_bench

    cfg, out, first = tiny_bench
    bench = tmp_path / "bench"
    shutil.copytree(out, bench)  # the comparison is finished: only the ablations train
    ablations = tmp_path / "abl.yaml"
    ablations.write_text(
        "title: Controls\nruns:\n  default: {}\n  tau0.2: {mirror.temperature: 0.2}\n"
        "compare:\n  - [joint, tau0.2]\n"
    )
    cfg = dataclasses.replace(cfg, out=str(bench), ablations=str(ablations))
    result = run_bench(cfg)
    assert result["ran"] == [("ablation/tau0.2", 0), ("ablation/tau0.2", 1)]  # `default` is the joint run
    assert len(result["skipped"]) == len(first["ran"])
    run = bench / "ablation" / "tau0.2" / "seed1"
    assert yaml.safe_load((run / "config.yaml").read_text())["mirror"]["temperature"] == 0.2
    joint = yaml.safe_load((bench / "joint" / "seed1" / "config.yaml").read_text())
    assert joint["mirror"]["temperature"] == 0.1 and joint["steps"] == 2

    data = json.loads((bench / "results.json").read_text())
    a = data["ablations"]["ablation/tau0.2"]
    assert a["overrides"] == ["mirror.temperature=0.2"]
    runs = data["runs"]
    diffs = [
        runs["ablation/tau0.2"][s]["metrics"]["success"]["overall"]
        - runs["joint"][s]["metrics"]["success"]["overall"]
        for s in ("0", "1")
    ]
    assert a["paired"]["success"]["overall"]["values"] == pytest.approx(diffs)
    over_policy = [
        runs["ablation/tau0.2"][s]["metrics"]["success"]["overall"]
        - runs["policy"][s]["metrics"]["success"]["overall"]
        for s in ("0", "1")
    ]
    assert a["paired_policy"]["success"]["overall"]["values"] == pytest.approx(over_policy)
    assert a["summary"]["recognition"]["video"]["n"] == 2
    md = (bench / "results.md").read_text()
    assert data["ablation_title"] == "Controls" and "## Controls\n" in md
    assert "| tau0.2 | `mirror.temperature=0.2` |" in md
    assert "| run | overrides | success | Δ vs policy alone |" in md
    # the declared comparison: the same per-seed pairs, the other way round
    (between,) = data["comparisons"]
    assert (between["treatment"], between["baseline"]) == ("joint", "ablation/tau0.2")
    assert between["success"]["overall"]["values"] == pytest.approx([-d for d in diffs])
    assert "| mirror (joint) − tau0.2 |" in md
    assert (bench / "ablations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_bench(cfg)["ran"] == []  # resumable like the rest

    ablations.write_text("runs:\n  a: {mirror.weight: 1.0}\ncompare:\n  - [a, b]\n")
    with pytest.raises(UserError, match=r"compare entry \['a', 'b'\]: no run 'b'"):
        run_bench(cfg)  # before anything trains
    assert not (bench / "ablation" / "a").exists()
    ablations.write_text("runs:\n  ../escape: {mirror.weight: 1.0}\n")
    with pytest.raises(UserError, match="plain folder name"):
        run_bench(cfg)


# --------------------------------------------------------------------------- the env pool
class CountingEnv(gym.Env):
    """Observation (index, steps since reset, seed, last action): where each call went."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)})
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.t, self.seed_ = 0, -1

    def _obs(self, action: float = 0.0) -> dict:
        return {"x": np.array([self.index, self.t, self.seed_, action], dtype=np.float64)}

    def reset(self, *, seed=None, options=None):
        self.t, self.seed_ = 0, seed
        return self._obs(), {"seed": seed}

    def step(self, action):
        self.t += 1
        return self._obs(float(action[0])), float(self.index), self.t >= 3, False, {"i": self.index}

    def where(self) -> int:
        return self.index


def make_counting_env(index: int) -> CountingEnv:
    return CountingEnv(index)


@pytest.mark.parametrize("workers", [0, 2])
def test_env_pool_keeps_environment_order(workers):
    import functools

    from embodied.eval.pool import EnvPool

    n = 5  # worker 0 holds environments 0, 2, 4; worker 1 holds 1, 3
    pool = EnvPool([functools.partial(make_counting_env, i) for i in range(n)], workers)
    try:
        obs, infos = pool.reset([{"seed": 10 + i} for i in range(n)])
        assert obs["x"][:, 0].tolist() == list(range(n)) and obs["x"][:, 2].tolist() == [10, 11, 12, 13, 14]
        assert [info["seed"] for info in infos] == [10, 11, 12, 13, 14]
        actions = np.arange(n, dtype=np.float32)[:, None] / 10  # (N, 1)
        for _ in range(3):
            obs, reward, terminated, truncated, infos = pool.step(actions)
        assert obs["x"][:, 3] == pytest.approx(actions[:, 0]) and obs["x"][:, 1].tolist() == [3] * n
        assert reward.tolist() == list(range(n)) and terminated.all() and not truncated.any()
        assert [info["i"] for info in infos] == list(range(n))
        assert pool.call("where") == list(range(n))
        assert pool.workers == workers
    finally:
        pool.close()
    assert pool.closed


def counting_commands(envs: list) -> dict:
    """A worker extension for the test below: ``where`` streams each environment's index, then
    answers with their sum plus the payload."""

    def where(payload, send):
        for env in envs:
            send(("index", env.index))
        return sum(env.index for env in envs) + payload

    return {"where": where}


def test_env_pool_extension_runs_commands_in_each_worker():
    import functools

    from embodied.eval.pool import EnvPool

    pool = EnvPool(
        [functools.partial(make_counting_env, i) for i in range(5)], 2, extension=counting_commands
    )
    try:
        assert [list(pool.share(w)) for w in range(2)] == [[0, 2, 4], [1, 3]]
        for w in range(2):
            pool.send(w, "where", 100)
        answers = {0: [], 1: []}
        busy = [0, 1]
        while busy:
            for w in pool.wait(busy):
                status, data = pool.receive(w)
                answers[w].append((status, data))
                if status == "ok":
                    busy.remove(w)
        assert answers[0] == [("index", 0), ("index", 2), ("index", 4), ("ok", 106)]
        assert answers[1] == [("index", 1), ("index", 3), ("ok", 104)]
        assert pool.step(np.zeros((5, 1), np.float32))[1].tolist() == [
            0,
            1,
            2,
            3,
            4,
        ]  # its own commands still work
    finally:
        pool.close()
    with pytest.raises(ValueError, match="worker processes"):
        EnvPool([functools.partial(make_counting_env, 0)], 0, extension=counting_commands)


def test_place_reuses_environments_built_for_the_task():
    from embodied.eval.envs import EpisodePlan
    from embodied.eval.rollout import place

    built = [("a", ()), ("b", ()), ("b", ()), ("a", ())]
    wave = [EpisodePlan("b", S), EpisodePlan("c", S), EpisodePlan("b", S + 1)]
    slots, where = place(wave, built)
    assert where == [1, 0, 2]  # the two b episodes to the b environments, c to the first free one
    assert [s.task if s else None for s in slots] == ["c", "b", "b", None]


def test_rollouts_do_not_depend_on_envs_per_worker():
    """The same episodes whatever the environments per worker (seeds fix them); idle slots included."""
    from embodied.eval.rollout import evaluate_policy

    tasks = ["reach-v3", "drawer-close-v3"]
    spec = _spec(tasks)
    runs = [
        evaluate_policy(_Goal(), spec, tasks, 3, workers=2, horizon=20, envs_per_worker=k) for k in (1, 2, 4)
    ]
    keys = [[(e.task, e.seed, e.success, e.length, e.failure) for e in r.episodes] for r in runs]
    assert keys[0] == keys[1] == keys[2]
    assert [r.envs_per_worker for r in runs] == [1, 2, 3]  # 4 per worker would leave environments unused
    returns = [[e.episode_return for e in r.episodes] for r in runs]
    assert returns[0] == pytest.approx(returns[1]) and returns[0] == pytest.approx(returns[2])


def test_policy_keeps_the_observations_it_was_given():
    """A policy with a history keeps the tensors it receives: a later step must not change them."""
    from embodied.eval.rollout import evaluate_policy

    class Keeper(_Goal):
        def __init__(self) -> None:
            self.kept, self.copies = [], []

        def predict_action(self, obs, instruction_id):
            self.kept.append(obs["robot_state"])
            self.copies.append(obs["robot_state"].clone())
            return super().predict_action(obs, instruction_id)

    policy = Keeper()
    evaluate_policy(policy, _spec(["reach-v3"]), ["reach-v3"], 1, workers=0, horizon=5)
    assert len(policy.kept) == 5
    for kept, copy in zip(policy.kept, policy.copies, strict=True):
        assert (kept == copy).all()
    assert not (policy.copies[0] == policy.copies[-1]).all()  # the hand moved


def _spec(tasks):
    from embodied.data.spec import DataSpec
    from embodied.sim import load_suite

    suite = load_suite("metaworld")
    return DataSpec(
        obs_shapes={"robot_state": [4], "object_state": [14], "goal": [3]},
        action_dim=4,
        num_classes=len(tasks),
        num_instructions=len(tasks),
        classes=list(tasks),
        instructions=[suite.task(t).instruction for t in tasks],
    )


class _Goal:
    """Moves the hand towards the goal (a per-row policy: a row's action depends on its row only)."""

    def reset(self) -> None:
        pass

    def predict_action(self, obs, instruction_id):
        import torch

        action = torch.zeros(len(instruction_id), 4)
        action[:, :3] = ((obs["goal"] - obs["robot_state"][:, :3]) * 10).clamp(-1, 1)
        return action


def test_a_finished_run_records_its_provenance_and_data(tiny_bench):
    import torch

    cfg, out, _ = tiny_bench
    marker = json.loads((out / "joint" / "seed0" / "bench.json").read_text())
    p = marker["provenance"]
    assert set(p) >= {"code", "python", "torch", "mujoco", "cpu", "threads"}
    assert p["torch"] == torch.__version__ and p["threads"] >= 1 and "model" in p["cpu"]
    assert set(p["code"]) == {"commit", "clean"}  # a checkout here: the commit and whether it was clean
    assert p["code"]["commit"] is None or len(p["code"]["commit"]) == 40
    files = sorted(path.name for path in Path(cfg.data.paths[0]).glob("*.hdf5"))
    assert sorted(marker["data"]) == files
    assert all(d["digest"].startswith("sha256:") and d["demos"] > 0 for d in marker["data"].values())


def test_a_run_finished_on_other_data_is_stale_not_skipped(tiny_bench, demo_dir, tmp_path):
    """Data collected again (here: one demo's actions changed) no longer matches what the
    finished runs were made on: the bench refuses to skip them, naming the file."""
    import dataclasses
    import shutil

    import h5py

    from embodied.bench import run_bench

    cfg, out, _ = tiny_bench
    data, old = tmp_path / "data", tmp_path / "old"
    shutil.copytree(demo_dir, data)
    shutil.copytree(out, old)
    changed = sorted(data.glob("*.hdf5"))[0]
    with h5py.File(changed, "r+") as f:
        f["data/demo_0/actions"][0] *= 0.5
    with pytest.raises(UserError, match=f"other data: {changed.name} differs in digest"):
        run_bench(
            dataclasses.replace(cfg, out=str(old), data=dataclasses.replace(cfg.data, paths=[str(data)]))
        )
    for path in old.glob("*/seed*/bench.json"):  # markers written before runs recorded their data
        marker = json.loads(path.read_text())
        del marker["data"]
        path.write_text(json.dumps(marker))
    with pytest.raises(UserError, match="records no data identity"):
        run_bench(dataclasses.replace(cfg, out=str(old)))
