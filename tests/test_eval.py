"""embodied.eval and embodied-eval: intervals, rollouts, robustness, videos, the judge, the files.

Rollouts run real Meta-World environments with a scripted stand-in policy (a proportional
controller towards the goal: it solves reach-v3 in about 30 steps), so successes and failures
both happen within a 30-step horizon. The worker processes import this module to build the
fault-injecting environments, so its top level imports no torch.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from embodied.seeds import EVAL_SEED_START
from embodied.sim import make_env
from embodied.stats import (
    _t_quantile_approx,
    mean_interval,
    paired_difference,
    t_quantile,
    wilson_interval,
)

TASKS = ["reach-v3", "drawer-close-v3"]
INSTRUCTIONS = ["reach the goal position", "close the drawer"]
HORIZON = 30
S = EVAL_SEED_START


# --------------------------------------------------------------------------- stand-ins
def make_spec(classes=TASKS, instructions=INSTRUCTIONS, image_size=32):
    from embodied.data.spec import DataSpec

    return DataSpec(
        obs_shapes={"robot_state": [4], "object_state": [14], "goal": [3]},
        action_dim=4,
        num_classes=len(classes),
        num_instructions=len(instructions),
        classes=list(classes),
        instructions=list(instructions),
        image_size=image_size,
    )


class GoalPolicy:
    """Moves the hand towards the goal; remembers its resets and the instruction ids it was given.

    ``interrupt_at``: raise KeyboardInterrupt at that call (as Ctrl-C would); ``nan``: return NaN.
    """

    def __init__(self, interrupt_at: int | None = None, nan: bool = False) -> None:
        self.resets = 0
        self.calls = 0
        self.instructions: list[list[int]] = []
        self.interrupt_at = interrupt_at
        self.nan = nan

    def reset(self) -> None:
        self.resets += 1

    def predict_action(self, obs, instruction_id):
        import torch

        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        self.instructions.append(instruction_id.tolist())
        action = torch.zeros(len(instruction_id), 4)
        action[:, :3] = ((obs["goal"] - obs["robot_state"][:, :3]) * 10).clamp(-1, 1)  # (W, 3)
        return action * float("nan") if self.nan else action


FAULTS = {("reach-v3", S + 1): "raise", ("drawer-close-v3", S): "nan"}
"""Episodes the faulty environment breaks: raise at step 5, or a NaN observation at step 3."""


class _Faulty(gym.Wrapper):
    def __init__(self, env, task: str) -> None:
        super().__init__(env)
        self.task_name, self.fault, self.t = task, None, 0

    def reset(self, *, seed=None, options=None):
        self.fault, self.t = FAULTS.get((self.task_name, seed)), 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        if self.fault == "raise" and self.t == 5:
            raise RuntimeError("simulated crash")
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.fault == "nan" and self.t == 3:
            obs = {**obs, "robot_state": np.full_like(obs["robot_state"], np.nan)}
        return obs, reward, terminated, truncated, info


def faulty_env(suite: str, task: str, **kwargs):
    """An ``env_fn`` for evaluate_policy: the suite's environment, broken on the FAULTS episodes."""
    return _Faulty(make_env(suite, task, **kwargs), task)


def read_video(path) -> list[np.ndarray]:
    """Every frame of a video file. (Not ``list(reader)``: the ffmpeg reader's ``len`` may be
    unknown, a huge number, and ``list`` would try to allocate for it.)"""
    import imageio.v2 as imageio

    if str(path).endswith(".gif"):
        return [np.asarray(f)[..., :3] for f in imageio.mimread(path)]
    with imageio.get_reader(path) as reader:
        return [frame for frame in reader]


def key(e) -> tuple:
    return (e.task, e.seed, e.success, e.length, e.steps_to_success, e.failure)


# --------------------------------------------------------------------------- statistics
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 3, 0.0615, 0.7923),
        (0, 0, 0.0, 1.0),
    ],
)
def test_wilson_interval_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.0)


@pytest.mark.parametrize(("df", "t975"), [(1, 12.7062), (2, 4.3027), (3, 3.1824), (9, 2.2622), (29, 2.0452)])
def test_t_quantile_with_and_without_scipy(df, t975):
    assert t_quantile(0.975, df) == pytest.approx(t975, rel=1e-4)
    assert _t_quantile_approx(0.975, df) == pytest.approx(t975, rel=3e-3)  # the numpy-only fallback


def test_mean_interval_and_paired_difference():
    m = mean_interval([1.0, 2.0, 3.0])  # mean 2, std 1, t(0.975, 2) = 4.3027
    assert (m.mean, m.std, m.n) == (2.0, 1.0, 3)
    assert m.low == pytest.approx(2 - 4.3027 / 3**0.5, abs=1e-4)
    assert m.high == pytest.approx(2 + 4.3027 / 3**0.5, abs=1e-4)
    d = paired_difference([0.5, 0.6, 0.7], [0.4, 0.4, 0.5])  # differences 0.1, 0.2, 0.2
    assert d.mean == pytest.approx(0.5 / 3)
    assert d.low < d.mean < d.high
    assert np.isnan(mean_interval([0.3]).low)
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- rollouts
@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """2 tasks x 2 episodes in process, the first of each as a video and recorded for a judge."""
    from embodied.eval.rollout import evaluate_policy
    from embodied.eval.settings import Videos

    videos = tmp_path_factory.mktemp("videos")
    policy, recorded = GoalPolicy(), []
    results = evaluate_policy(
        policy,
        make_spec(),
        TASKS,
        episodes=2,
        workers=0,
        horizon=HORIZON,
        videos=Videos(episodes=1, folder=videos, cameras=("corner",)),
        observer_episodes=1,  # of the suite's observer camera, corner
        on_episode=lambda record, recording: recorded.append((record, recording)),
    )
    return SimpleNamespace(results=results, policy=policy, recorded=recorded, videos=videos)


def test_evaluate_policy_results_are_well_formed(in_process):
    r, policy = in_process.results, in_process.policy
    assert [(e.task, e.seed) for e in r.episodes] == [(t, S + i) for t in TASKS for i in range(2)]
    reach = r.episodes[:2]
    # The controller needs 35-36 steps on these two reach seeds: both run out of the 30 steps.
    assert [e.success for e in reach] == [False, False]
    assert [e.failure for e in reach] == ["horizon", "horizon"] and [e.length for e in reach] == [30, 30]
    drawer = r.episodes[2:]
    assert all(e.success and e.failure is None and e.length == e.steps_to_success < HORIZON for e in drawer)
    assert all(np.isfinite(e.episode_return) for e in r.episodes)

    assert r.tasks["reach-v3"].successes == 0 and r.tasks["drawer-close-v3"].successes == 2
    assert (r.ci_low, r.ci_high) == pytest.approx(wilson_interval(2, 4))
    assert r.success_rate == 0.5 and r.overall.episodes == 4
    assert r.overall.mean_steps_to_success == pytest.approx(np.mean([e.length for e in drawer]))
    assert r.env_steps == sum(e.length for e in r.episodes) and r.steps_per_s > 0 and not r.interrupted

    # One environment in process: one episode per wave, one reset of the policy per episode,
    # and each step's instruction id is the task's position in the spec's instructions.
    assert policy.resets == 4
    steps_per_task = [sum(e.length for e in r.episodes if e.task == t) for t in TASKS]
    # (Every call has 16 rows, POLICY_ROWS: the one environment's row and copies of it.)
    assert policy.instructions == [[0] * 16] * steps_per_task[0] + [[1] * 16] * steps_per_task[1]


def test_progress_counts_steps_before_the_first_episode_ends(monkeypatch):
    """The progress bar moves while a wave runs (its steps, about once a second; here every
    step), not only when its episodes end together, and ends at every episode's step limit."""
    from embodied.eval import waves
    from embodied.eval.results import Collector
    from embodied.eval.rollout import evaluate_policy

    monkeypatch.setattr(waves, "STEPS_EVERY_S", 0.0)
    events = []
    monkeypatch.setattr(Collector, "steps", lambda self, n: events.append(("steps", n)))
    evaluate_policy(
        GoalPolicy(),
        make_spec(),
        ["reach-v3"],
        2,
        workers=0,
        horizon=HORIZON,
        on_episode=lambda r, _: events.append(("episode", r.length)),
    )
    first_end = events.index(("episode", HORIZON))
    assert events[:first_end] == [("steps", 1)] * HORIZON  # one environment in process: a step at a time
    assert sum(n for kind, n in events if kind == "steps") == 2 * HORIZON


def test_recordings_and_videos(in_process):
    from embodied.video import frame_shape

    recorded = {(rec.task, rec.seed): recording for rec, recording in in_process.recorded}
    assert len(recorded) == 4
    for task in TASKS:
        first, second = recorded[(task, S)], recorded[(task, S + 1)]
        assert second is None  # only the first episode of each task was recorded
        length = next(e.length for e in in_process.results.episodes if (e.task, e.seed) == (task, S))
        assert first.frames["corner"].shape == (length + 1, 32, 32, 3)  # the observer, as observed
        assert first.video["corner"].shape == (length + 1, 256, 256, 3)  # rendered for watching
        assert first.obs["goal"].shape == (length + 1, 3)

    videos = sorted(in_process.videos.iterdir())
    assert [v.name for v in videos] == sorted(f"{t}_seed{S}.mp4" for t in TASKS)  # no temporary files left
    for e in in_process.results.episodes:
        assert (e.video is not None) == (e.seed == S)
        if e.video:
            frames = read_video(e.video)
            assert len(frames) == e.length + 1
            assert frames[0].shape == (*frame_shape(256, 256, 1), 3)  # Videos.size, not the policy's 32


@pytest.mark.parametrize("policy_in_workers", [None, False], ids=["policy in the workers", "lock-step"])
def test_async_workers_are_deterministic_and_survive_broken_environments(in_process, policy_in_workers):
    """2 worker processes, the policy in each (the default on a CPU) or in this process: a step
    that raises and a NaN observation each fail one episode; the other episodes come out
    exactly as in process (the seeds fix them)."""
    from embodied.eval.rollout import evaluate_policy

    before = signal.getsignal(signal.SIGINT)  # a background job (CI) may start with SIGINT ignored
    r = evaluate_policy(
        GoalPolicy(),
        make_spec(),
        TASKS,
        episodes=2,
        workers=2,
        horizon=HORIZON,
        env_fn=faulty_env,
        policy_in_workers=policy_in_workers,
    )
    assert r.policy_in_workers == (policy_in_workers is None)
    # Only the workers leave Ctrl-C to the main process (AsyncVectorEnv builds one env here too).
    assert signal.getsignal(signal.SIGINT) is before
    by_seed = {(e.task, e.seed): e for e in r.episodes}
    crashed, poisoned = by_seed[("reach-v3", S + 1)], by_seed[("drawer-close-v3", S)]
    assert not crashed.success and "RuntimeError: simulated crash" in crashed.failure and crashed.length == 4
    assert not poisoned.success and "non-finite observation (robot_state)" in poisoned.failure
    assert r.tasks["reach-v3"].errors == 1 and r.overall.errors == 2
    expected = {(e.task, e.seed): e for e in in_process.results.episodes}
    for k in [("reach-v3", S), ("drawer-close-v3", S + 1)]:  # the healthy ones, the second after a rebuild
        assert key(by_seed[k]) == key(expected[k])
        assert by_seed[k].episode_return == pytest.approx(expected[k].episode_return, rel=1e-5)


def test_non_finite_actions_fail_the_episode():
    from embodied.eval.rollout import evaluate_policy

    r = evaluate_policy(GoalPolicy(nan=True), make_spec(), ["reach-v3"], episodes=1, workers=0, horizon=10)
    assert r.episodes[0].failure == "non-finite action from the policy" and r.episodes[0].length == 0


def test_keyboard_interrupt_keeps_the_finished_episodes():
    from embodied.eval.rollout import EvaluationInterrupted, evaluate_policy

    policy = GoalPolicy(interrupt_at=15)  # episode 1 ends after 10 steps; Ctrl-C in episode 2
    with pytest.raises(EvaluationInterrupted) as info:
        evaluate_policy(policy, make_spec(), ["reach-v3"], episodes=3, workers=0, horizon=10)
    r = info.value.results
    assert r.interrupted and [(e.seed, e.length) for e in r.episodes] == [(S, 10)]
    assert r.tasks["reach-v3"].episodes == 1


class RefusingPolicy(GoalPolicy):
    """Raises a user error at its first step (as a policy that cannot read the observations would)."""

    def predict_action(self, obs, instruction_id):
        from embodied.errors import UserError

        raise UserError("this policy reads no goal")


def test_a_user_error_in_a_policy_worker_reaches_the_caller_as_it_is():
    from embodied.errors import UserError
    from embodied.eval.rollout import evaluate_policy

    with pytest.raises(UserError, match="^this policy reads no goal$"):
        evaluate_policy(RefusingPolicy(), make_spec(), ["reach-v3"], episodes=2, workers=2, horizon=5)


def test_a_policy_that_cannot_be_pickled_runs_in_this_process():
    from embodied.errors import UserError
    from embodied.eval.rollout import evaluate_policy

    class Local(GoalPolicy):  # defined in a function: pickle cannot find it
        pass

    r = evaluate_policy(Local(), make_spec(), ["reach-v3"], episodes=2, workers=2, horizon=5)
    assert not r.policy_in_workers and r.overall.episodes == 2
    with pytest.raises(UserError, match="cannot be pickled"):
        evaluate_policy(Local(), make_spec(), ["reach-v3"], episodes=2, workers=2, policy_in_workers=True)
    with pytest.raises(UserError, match="needs worker processes"):
        evaluate_policy(
            GoalPolicy(), make_spec(), ["reach-v3"], episodes=2, workers=0, policy_in_workers=True
        )


def test_keyboard_interrupt_with_the_policy_in_the_workers_keeps_the_finished_episodes():
    """Ctrl-C while the workers run: the episodes that came back are kept, the workers stopped."""
    import multiprocessing as mp

    from embodied.eval.rollout import EvaluationInterrupted, evaluate_policy

    seen = []

    def on_episode(record, recording):
        seen.append(record)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as Ctrl-C arriving while the third episode is reported

    with pytest.raises(EvaluationInterrupted) as info:
        evaluate_policy(
            GoalPolicy(), make_spec(), TASKS, episodes=3, workers=2, horizon=HORIZON, on_episode=on_episode
        )
    r = info.value.results
    assert r.interrupted and r.policy_in_workers
    assert [(e.task, e.seed) for e in r.episodes] == sorted(
        [(e.task, e.seed) for e in seen[:2]], key=lambda k: (TASKS.index(k[0]), k[1])
    )
    assert not mp.active_children()


def test_unknown_task_for_the_policy_is_a_user_error():
    from embodied.errors import UserError
    from embodied.eval.rollout import evaluate_policy

    with pytest.raises(UserError, match="not on push-v3"):
        evaluate_policy(GoalPolicy(), make_spec(), ["push-v3"], episodes=1, workers=0)


def test_worker_module_does_not_import_torch():
    code = "import sys, embodied.eval.envs, embodied.cli.eval; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- videos
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_has_every_frame_side_by_side(tmp_path, suffix):
    from embodied.video import frame_shape, write_episode_video

    rng = np.random.default_rng(0)
    frames = {c: rng.integers(0, 255, (7, 24, 20, 3), dtype=np.uint8) for c in ("corner", "topview")}
    path = write_episode_video(tmp_path / f"ep{suffix}", frames, "reach-v3", 5, None, "horizon", fps=10)
    read = read_video(path)
    assert len(read) == 7
    assert read[0].shape == (*frame_shape(24, 20, 2), 3)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# --------------------------------------------------------------------------- judge
def test_judge_summary_relates_agreement_and_alignment_to_success():
    from embodied.eval.judge import auroc, judge_summary
    from embodied.eval.rollout import EpisodeRecord

    def rec(success, agrees, alignment):
        r = EpisodeRecord(
            "reach-v3", S, success, 0.0, 10, 5 if success else None, None if success else "horizon"
        )
        r.extra.update(agrees=agrees, alignment=alignment)
        return r

    records = [rec(True, True, 0.9), rec(True, True, 0.5), rec(True, False, 0.4), rec(False, False, 0.45)]
    s = judge_summary(records)
    assert s["agreement"]["rate"] == 0.5 and s["agreement"]["n"] == 4
    assert s["agreement_success"]["rate"] == pytest.approx(2 / 3) and s["agreement_failure"]["rate"] == 0.0
    a = s["alignment"]
    assert a["success_mean"] == pytest.approx(0.6) and a["failure_mean"] == pytest.approx(0.45)
    assert a["difference"] == pytest.approx(0.15) and a["auroc"] == pytest.approx(2 / 3)
    assert auroc([1.0], []) is None and judge_summary([rec(True, True, 0.1)][:0]) == {}


def test_rollout_judge_verdict_and_alignment_pairing():
    """On a one-step episode every pair is (clip of frame 0 repeated, window of observation 0):
    the judge's alignment must equal that cosine computed by hand."""
    import torch

    from embodied.eval.envs import Recording
    from embodied.eval.judge import RolloutJudge
    from embodied.eval.rollout import EpisodeRecord
    from embodied.mirror import MirrorConfig, MirrorHead, pair_alignment
    from embodied.policies import BCMLPConfig, build_policy
    from embodied.recognizers import Conv3DConfig, build_recognizer

    torch.manual_seed(0)
    spec = make_spec()
    spec.clip_len = 4
    recognizer = build_recognizer(Conv3DConfig(width=4, depth=2), spec).eval()
    policy = build_policy(BCMLPConfig(hidden_dim=16), spec).eval()
    mirror = MirrorHead(MirrorConfig(dim=8), recognizer.feature_dim, policy.feature_dim).eval()
    judge = RolloutJudge(
        recognizer,
        spec,
        "corner",
        clip_stride=2,
        policy=policy,
        mirror=mirror,
        instruction_ids={"drawer-close-v3": 1},
    )
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)  # L + 1 = 2 frames
    obs = {k: rng.normal(size=(2, s[0])).astype(np.float32) for k, s in spec.obs_shapes.items()}
    record = EpisodeRecord("drawer-close-v3", S, False, 0.0, 1, None, "horizon")
    judge(record, Recording(frames={"corner": frames}, obs=obs))

    extra = record.extra
    assert extra["recognized_task"] in TASKS and extra["agrees"] == (
        extra["recognized_task"] == "drawer-close-v3"
    )
    assert 0.0 <= extra["instructed_prob"] <= 1.0
    with torch.no_grad():
        clip = torch.from_numpy(frames[[0] * spec.clip_len]).permute(0, 3, 1, 2)[None]  # (1, T, 3, H, W)
        f_u = recognizer.features(clip)
        window = {k: torch.from_numpy(v[:1])[None] for k, v in obs.items()}  # (1, 1, d)
        f_e = policy.features({"obs": window, "instruction_id": torch.tensor([1])})
        expected = float(pair_alignment(*mirror.embed(f_u, f_e))[0])
    assert extra["alignment"] == pytest.approx(expected, abs=1e-5)
    skipped = EpisodeRecord("reach-v3", S, True, 0.0, 1, 1, None)
    judge(skipped, None)  # not recorded: left alone
    assert skipped.extra == {}


# --------------------------------------------------------------------------- files and the command
def test_results_files_are_well_formed(in_process, tmp_path):
    from embodied.eval.report import results_payload, write_results

    payload = results_payload(
        in_process.results, checkpoint="ckpt.pt", kind="policy", settings={"horizon": 30}
    )
    json_path, md_path, md = write_results(tmp_path, payload)
    data = json.loads(json_path.read_text())  # strict JSON: no NaN
    assert data["format"] == "embodied-eval-results" and data["format_version"] == 1
    assert data["tasks"]["drawer-close-v3"]["success_rate"] == 1.0
    assert data["tasks"]["reach-v3"]["mean_steps_to_success"] is None
    assert len(data["episodes"]) == 4 and data["episodes"][0]["failure"] == "horizon"
    rows = [line for line in md_path.read_text().splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == [*TASKS, "**overall**"]
    assert "| **overall** | 0.50 | [0.15, 0.85] | 2/4 |" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]


def fake_checkpoint(monkeypatch, policy, classes=TASKS):
    """Make load_model return ``policy`` (a policy-only checkpoint of the given tasks)."""
    import embodied.train.checkpoint as ckpt

    config = SimpleNamespace(data=SimpleNamespace(paths=[], camera=None, clip_stride=2))
    monkeypatch.setattr(
        ckpt,
        "load_model",
        lambda path, device="cpu": ("policy", {"policy": policy}, make_spec(classes), config),
    )


def test_cli_ctrl_c_writes_the_finished_episodes(monkeypatch, tmp_path, capsys):
    from embodied.cli.eval import main

    fake_checkpoint(monkeypatch, GoalPolicy(interrupt_at=15))
    (tmp_path / "x.pt").write_bytes(b"")  # there, as eval asks before it loads (a stand-in loads it)
    out = tmp_path / "eval"
    argv = [
        str(tmp_path / "x.pt"),
        "--episodes",
        "3",
        "--tasks",
        "reach-v3",
        "--workers",
        "0",
        "--horizon",
        "10",
    ]
    assert main([*argv, "--out", str(out)]) == 130
    data = json.loads((out / "results.json").read_text())
    assert (
        data["interrupted"] is True
        and len(data["episodes"]) == 1
        and data["tasks"]["reach-v3"]["episodes"] == 1
    )
    assert "**Interrupted**: 1 of 3 episodes" in (out / "results.md").read_text()
    assert "interrupted" in capsys.readouterr().err


def test_cli_user_errors_are_one_line(monkeypatch, tmp_path, capsys):
    from embodied.cli.eval import main

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert main([str(garbage)]) == 2
    assert main([str(tmp_path / "missing.pt")]) == 2
    fake_checkpoint(monkeypatch, GoalPolicy())
    assert main([str(garbage), "--tasks", "push-v3"]) == 2  # a task it was not trained on
    assert main([str(garbage), "--tasks", "mt10"]) == 2
    assert main([str(garbage), "--suite", "robosuite"]) == 2  # another suite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("error: ") for line in err)
    assert "not a readable checkpoint" in err[0] and "not on push-v3" in err[2] and "not robosuite" in err[4]
    assert not (tmp_path / "eval").exists()


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    """A joint run of 2 steps on the shared tiny dataset (policy, recognizer, mirror head)."""
    return tiny_run(
        "joint_quick", "policy.hidden_dim=16", "recognizer.width=4", "recognizer.depth=2", "mirror.dim=8"
    )


def test_end_to_end_train_then_eval(trained_run, capsys):
    """embodied-train (above), then embodied-eval with a video: success table, the recognizer's
    accuracy, its verdict and the alignment of each episode."""
    from embodied.cli.eval import main as eval_main

    run = trained_run
    capsys.readouterr()
    argv = [str(run), "--episodes", "2", "--horizon", "12", "--videos", "1", "--workers", "2"]
    assert eval_main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "| **overall** |" in printed and "results.json" in printed
    # The progress bar counts the workers' steps and each early end's unused steps: 4 x 12 in all.
    assert "rollouts: 100%" in captured.err and "48/48" in captured.err and "episodes=4/4" in captured.err
    assert f"wrote 2 video(s) into {run / 'eval' / 'videos'}" in printed  # every run lists its videos

    out = run / "eval"
    data = json.loads((out / "results.json").read_text())
    assert data["kind"] == "joint" and data["task_names"] == ["drawer-close-v3", "reach-v3"]
    assert data["overall"]["episodes"] == 4 and all(e["length"] <= 12 for e in data["episodes"])
    assert {"clip_accuracy", "video_accuracy"} <= set(data["recognizer"])
    assert data["judge"]["agreement"]["n"] == 4
    assert all("agrees" in e["extra"] and -1.0 <= e["extra"]["alignment"] <= 1.0 for e in data["episodes"])
    videos = sorted((out / "videos").iterdir())
    assert [v.name for v in videos] == [f"drawer-close-v3_seed{S}.mp4", f"reach-v3_seed{S}.mp4"]
    first = next(e for e in data["episodes"] if e["task"] == "reach-v3" and e["seed"] == S)
    assert len(read_video(Path(first["video"]))) == first["length"] + 1
    assert "## Recognizer as judge of the rollouts" in (out / "results.md").read_text()
    assert (
        data["policy_in_workers"] is True and "the policy in each worker" in (out / "results.md").read_text()
    )


def test_eval_with_the_policy_in_the_main_process(trained_run, tmp_path):
    from embodied.cli.eval import main as eval_main

    out = tmp_path / "main"
    argv = [str(trained_run), "--episodes", "2", "--tasks", "reach-v3", "--horizon", "5", "--workers", "2"]
    assert eval_main([*argv, "--policy-in-main", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["policy_in_workers"] is False and data["overall"]["episodes"] == 2


def test_the_target_is_resolved_once(trained_run, tmp_path, monkeypatch):
    """embodied-eval resolves the tasks and the camera and draws the protocol's episodes once,
    and passes them on to the rollouts, the judge and the videos."""
    import embodied.eval.plan as plan
    from embodied.cli.eval import main as eval_main

    calls = {"select_tasks": 0, "schedule": 0}

    def counted(name):
        real = getattr(plan, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return call

    for name in calls:
        monkeypatch.setattr(plan, name, counted(name))
    out = tmp_path / "once"
    argv = [str(trained_run), "--episodes", "1", "--horizon", "5", "--workers", "0", "--videos", "1"]
    assert eval_main([*argv, "--out", str(out)]) == 0
    assert calls == {"select_tasks": 1, "schedule": 1}
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["horizon"] == 5 and data["settings"]["cameras"] == [data["settings"]["observer"]]
    assert data["judge"]["agreement"]["n"] == 2 and len(list((out / "videos").iterdir())) == 2


def test_videos_only(trained_run, tmp_path):
    from embodied.cli.eval import main as eval_main

    only = tmp_path / "only"
    argv = [str(trained_run), "--videos-only", "--videos", "1", "--tasks", "reach-v3", "--horizon", "5"]
    assert eval_main([*argv, "--workers", "0", "--gif", "--out", str(only)]) == 0
    assert sorted(p.name for p in (only / "videos").iterdir()) == [f"reach-v3_seed{S}.gif"]
    assert not (only / "results.json").exists()


# End to end through a terminal-like process group: ~100 s here; the in-process Ctrl-C tests stay
# in the default tier.
@pytest.mark.slow
def test_ctrl_c_in_a_terminal_writes_the_finished_episodes(trained_run, tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) once an episode has
    finished: exit status 130, and results.json holds the finished episodes, marked interrupted."""
    import os
    import re
    import threading

    out = tmp_path / "eval"
    argv = [str(trained_run), "--episodes", "20", "--horizon", "150", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "embodied.cli.eval", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # a terminal's job gets Ctrl-C even when this test runs as a background job (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen, progressed = [], threading.Event()

    def watch() -> None:  # tqdm's progress bar: "episodes=k/40" once k episodes have finished
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.append(chunk.decode(errors="replace"))
            if re.search(r"episodes=[1-9]\d*/40", "".join(seen)):
                progressed.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert progressed.wait(timeout=120), "".join(seen)[-2000:]
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130, "".join(seen)[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] is True and 1 <= len(data["episodes"]) < 40
    assert data["overall"]["episodes"] == len(data["episodes"])


def test_episodes_do_not_depend_on_how_many_environments_share_a_batch(tiny_run):
    """A trained MLP policy: the same returns, to the last bit, in process (one environment) and
    in 2 workers with 3 environments each. Its matrix products would round differently for 1
    and for 3 rows, and an episode amplifies that; every policy call has 16 rows instead."""
    from embodied.eval.rollout import evaluate_policy
    from embodied.train.checkpoint import load_model

    run = tiny_run("policy_mt10_mlp", "policy.hidden_dim=64")
    _, models, spec, _ = load_model(run)
    runs = [
        evaluate_policy(models["policy"], spec, TASKS, 3, horizon=60, workers=w, envs_per_worker=k)
        for w, k in ((0, None), (2, 3))
    ]
    assert [r.workers * r.envs_per_worker for r in runs] == [1, 6]
    returns = [[e.episode_return for e in r.episodes] for r in runs]
    assert returns[0] == returns[1]
