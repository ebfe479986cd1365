"""The visual mirror benchmark's setting: presets that compare fairly, a policy tap that carries
no task id, and a probe whose numbers have known answers and chance levels."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from embodied.bench.config import load_ablations, load_preset
from embodied.bench.runner import check_comparable, train_config
from embodied.config import load_config
from embodied.data.spec import DataSpec
from embodied.keys import INSTRUCTION, OBS
from embodied.mirror import episode_means, gallery_retrieval, positive_mask
from embodied.paths import resolve_resource
from embodied.policies import build_policy
from embodied.train.config import TrainConfig


@pytest.mark.parametrize("preset", ["visual", "visual_large", "visual_diffusion"])
def test_visual_presets_load_and_compare_fairly(preset):
    cfg = load_preset(preset)
    assert cfg.seeds >= 5  # the protocol: at least 5 training seeds for any claim
    check_comparable(cfg)  # joint trains its policy and recognizer as the runs alone do
    policy = train_config(cfg, "policy", 0).policy
    assert "object_state" not in policy.obs_keys and "goal" not in policy.obs_keys  # pixels, no state
    assert policy.feature_tap.startswith("encoder.encoders.") and policy.feature_tap.endswith("_image")
    assert train_config(cfg, "joint", 0).mirror.positives == "instruction"


def test_visual_ablations_cover_the_papers_levels_and_temperatures():
    runs = load_ablations("ablations_visual")
    assert runs["pos_episode"] == ["mirror.positives=episode"] and runs["pos_class"] == [
        "mirror.positives=class"
    ]
    assert runs["tau0.02"] == ["mirror.temperature=0.02"] and runs["tau0.2"] == ["mirror.temperature=0.2"]


def _visual_policy(conditioning: str, tap: str) -> torch.nn.Module:
    """The policy of configs/policy_visual.yaml, with the given conditioning and tap, on 32 px."""
    raw = load_config(TrainConfig, resolve_resource("policy_visual", "configs")).policy
    cfg = dataclasses.replace(raw, conditioning=conditioning, feature_tap=tap)
    spec = DataSpec(
        obs_shapes={"robot_state": [4], "corner_image": [3, 32, 32]},
        action_dim=4,
        num_classes=2,
        num_instructions=4,
        classes=["drawer", "window"],
        instructions=["open the drawer", "close the drawer", "open the window", "close the window"],
    )
    torch.manual_seed(0)
    return build_policy(cfg, spec).eval()


@pytest.mark.parametrize("conditioning", ["concat", "film"])
def test_the_visual_policys_tap_does_not_see_the_instruction(conditioning):
    """A randomly initialised policy: its tapped feature is the same whatever the instruction,
    while a tap after the conditioning (the trunk) does change with it."""
    torch.manual_seed(1)
    obs = {
        "robot_state": torch.randn(3, 1, 4),
        "corner_image": torch.randint(0, 256, (3, 1, 3, 32, 32), dtype=torch.uint8),
    }
    feats = {}
    for tap in ("encoder.encoders.corner_image", "trunk"):
        policy = _visual_policy(conditioning, tap)
        if conditioning == "film":  # FiLM starts as the identity: give it weights, as training would
            torch.nn.init.normal_(policy.conditioning.film.weight)
        with torch.no_grad():
            feats[tap] = [policy.features({OBS: obs, INSTRUCTION: torch.full((3,), i)}) for i in (0, 1, 3)]
    before, after = feats["encoder.encoders.corner_image"], feats["trunk"]
    assert all(torch.equal(before[0], f) for f in before[1:])
    assert not torch.allclose(after[0], after[1]) and not torch.allclose(after[0], after[2])


def test_positive_levels_differ_on_a_batch_with_a_hierarchy():
    episode = torch.tensor([0, 1, 2, 3, 4, 5])
    instruction = torch.tensor([0, 0, 1, 1, 2, 3])  # open drawer x2, close drawer x2, open/close window
    label = torch.tensor([0, 0, 0, 0, 1, 1])
    masks = {
        lvl: positive_mask(lvl, episode, instruction, label) for lvl in ("episode", "instruction", "class")
    }
    assert masks["episode"].sum() == 6 and masks["instruction"].sum() == 10 and masks["class"].sum() == 20
    assert (masks["episode"] <= masks["instruction"]).all() and (masks["instruction"] <= masks["class"]).all()


def test_gallery_retrieval_known_answers_and_chance():
    """8 episodes: 2 classes x 2 instructions x 2 episodes. z_e is z_u for instructions 0 and 1
    (every level found); for instructions 2 and 3 each z_e is the *other* episode of its
    instruction: the instruction and class are found, the episode never."""
    torch.manual_seed(0)
    instruction = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    label = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    z_u = torch.randn(8, 32)
    z_e = z_u.clone()
    z_e[[4, 5, 6, 7]] = z_u[[5, 4, 7, 6]]
    r = gallery_retrieval(z_u, z_e, instruction, label)
    assert r["gallery"] == 8
    assert r["recall@1_episode_u2e"] == pytest.approx(0.5) and r["recall@1_episode_e2u"] == pytest.approx(0.5)
    assert r["recall@1_instruction_u2e"] == 1.0 and r["recall@1_class_e2u"] == 1.0
    assert r["within_instruction@1_u2e"] == pytest.approx(0.5)  # the label alone cannot give it
    assert r["chance@1_episode"] == pytest.approx(1 / 8)
    assert r["chance@1_instruction"] == pytest.approx(2 / 8) and r["chance@1_class"] == pytest.approx(4 / 8)
    assert r["chance@1_within_instruction"] == pytest.approx(1 / 2)


def test_random_embeddings_sit_at_the_chance_levels():
    torch.manual_seed(0)
    n = 400
    instruction = torch.arange(n) // 10  # 40 instructions of 10 episodes
    label = instruction // 4  # 10 classes of 4 instructions
    hits = {k: [] for k in ("recall@1_episode_u2e", "recall@1_class_u2e", "within_instruction@1_u2e")}
    for _ in range(20):
        r = gallery_retrieval(torch.randn(n, 16), torch.randn(n, 16), instruction, label)
        for k in hits:
            hits[k].append(r[k])
    mean = {k: sum(v) / len(v) for k, v in hits.items()}
    assert mean["recall@1_episode_u2e"] == pytest.approx(r["chance@1_episode"], abs=0.01)
    assert mean["recall@1_class_u2e"] == pytest.approx(r["chance@1_class"], abs=0.02)
    assert mean["within_instruction@1_u2e"] == pytest.approx(r["chance@1_within_instruction"], abs=0.03)


def test_episode_means_average_normalised_rows_per_episode():
    z = torch.tensor([[3.0, 0.0], [0.0, 5.0], [2.0, 0.0]])
    means, ids = episode_means(z, torch.tensor([7, 7, 2]))
    assert ids.tolist() == [2, 7]
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert not math.isnan(means.sum().item())


def test_visual_controls_are_runs_of_the_same_grid():
    """The controls the mirror gain is checked against run with the preset's data, steps, batches and
    seeds; those without a recognizer drop its section, frozen_u reads this seed's recognizer run."""
    from embodied.bench.runner import ablation_runs, train_config

    cfg = load_preset("visual")
    assert cfg.seeds >= 8 and cfg.ablations == "controls_visual"
    runs = ablation_runs(cfg)
    names = {m.split("/", 1)[1] for m in runs}
    assert {"no_align", "label_partner", "aux_ce", "frozen_u", "episode_nolabel", "episode_selfsup"} <= names
    joint = train_config(cfg, "joint", 3)
    for method in runs:
        tcfg = train_config(cfg, method, 3)
        assert (tcfg.steps, tcfg.data.batch_size, tcfg.seed, tcfg.optim) == (
            joint.steps,
            joint.data.batch_size,
            3,
            joint.optim,
        )
        assert tcfg.policy == joint.policy and tcfg.data.paths == joint.data.paths
    assert train_config(cfg, "ablation/aux_ce", 3).recognizer is None
    frozen = train_config(cfg, "ablation/frozen_u", 3)
    assert frozen.probe.recognizer_ckpt.endswith("recognizer/seed3") and not frozen.probe.policy_ckpt


@pytest.mark.parametrize(
    ("preset", "demos"), [("watching", 8), ("watching_few", 2), ("watching_few_mixed", 2)]
)
def test_the_watching_preset_gives_every_policy_the_same_few_demonstrations(preset, demos):
    """Learning by watching: every method reads the same batches from every episode (failures
    kept); the policies learn the actions of a few demonstrations per task only."""
    from embodied.bench.runner import ablation_runs, check_comparable, train_config
    from embodied.config import from_dict, load_yaml
    from embodied.data.collect import CollectConfig
    from embodied.paths import resolve_resource

    cfg = load_preset(preset)
    check_comparable(cfg)
    recipe = from_dict(CollectConfig, load_yaml(resolve_resource(cfg.data.recipe, "datasets/recipes")))
    assert recipe.keep_failures and recipe.tasks == ["lookalike"]
    runs = [train_config(cfg, m, 1) for m in (*cfg.methods, *ablation_runs(cfg))]
    assert {r.mode for r in runs} >= {"policy", "recognizer", "joint", "label_partner", "aux_ce"}
    assert {(r.data.action_demos, r.data.batch_size, r.steps) for r in runs} == {(demos, 64, 2000)}
    # The one arm where no instruction label reaches E: episode positives, U without its
    # instruction loss.
    nolabel = train_config(cfg, "ablation/episode_nolabel", 1)
    assert nolabel.mirror.positives == "episode" and nolabel.recognizer.instruction_loss_weight == 0.0
    selfsup = train_config(cfg, "ablation/episode_selfsup", 1)
    assert selfsup.mode == "joint_selfsup" and selfsup.mirror.positives == "episode"
    # The controls without the watching: the same action demos and nothing else.
    alone = train_config(cfg, "ablation/demos_only", 1)
    assert alone.mode == "policy" and not alone.data.watch_all and alone.recognizer is None
    assert not train_config(cfg, "ablation/selfsup_demos_only", 1).data.watch_all
