"""Contract tests for every registered policy x every registered head, on tiny synthetic data."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from embodied.config import field_docs, from_dict, to_dict
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.keys import ACTION_MASK, ACTIONS, EPISODE, INSTRUCTION, LABEL, OBS
from embodied.policies import (
    HEADS,
    POLICIES,
    ACTConfig,
    BCMLPConfig,
    BCRNNConfig,
    BCTransformerConfig,
    ChunkHeadConfig,
    DeterministicHeadConfig,
    DiffusionConfig,
    DiffusionHeadConfig,
    GMMHeadConfig,
    PolicyConfig,
    build_policy,
)
from embodied.policies.encoders import crop
from embodied.policies.heads import GMMHead

B, TO, TA, A = 5, 3, 4, 3
LOW_DIM = {"robot_state": [4], "object_state": [6], "goal": [3]}
IMAGE = {"corner_image": [3, 32, 32]}


def make_spec(images: bool = False) -> DataSpec:
    shapes = {**LOW_DIM, **(IMAGE if images else {})}
    return DataSpec(obs_shapes=shapes, action_dim=A, num_instructions=3, obs_horizon=TO, action_horizon=TA)


def takes(policy: str, head: str) -> bool:
    """Whether policy ``policy`` takes the registered head ``head``."""
    allowed = POLICIES.config_class(policy).heads
    return allowed is None or head in allowed


def default_head(policy: str) -> str:
    allowed = POLICIES.config_class(policy).heads
    return "deterministic" if allowed is None else allowed[0]


# A denoiser small enough for the contract tests: a two-level U-Net over the window's Ta actions.
TINY_DIFFUSION = dict(
    horizon=TA, n_action_steps=2, down_dims=[16, 32], n_groups=4, step_embed_dim=16, num_inference_steps=3
)


def make_config(policy: str, head=None, images: bool = False, **overrides) -> PolicyConfig:
    """A small config of policy ``policy``; ``head`` a head config or a registered head name
    (None: the policy's first head, deterministic where it takes every head)."""
    if head is None or isinstance(head, str):
        name = head or default_head(policy)
        head = DiffusionHeadConfig(**TINY_DIFFUSION) if name == "diffusion" else HEADS.config_class(name)()
    cls = POLICIES.config_class(policy)
    kwargs = dict(
        name=policy,
        head=head,
        obs_keys=list(LOW_DIM) + (list(IMAGE) if images else []),
        hidden_dim=32,
        instruction_dim=8,
        low_dim_embed=16,
        image_embed=16,
        image_channels=8,
        image_keypoints=8,
    )
    names = {f.name for f in dataclasses.fields(cls)}
    if "history" in names:
        kwargs["history"] = TO
    if "num_heads" in names:
        kwargs["num_heads"] = 2
    if "feedforward_dim" in names:  # ACT
        kwargs.update(feedforward_dim=64, num_layers=1, vae_layers=1)
    if "dropout" in names:
        kwargs["dropout"] = 0.0  # the tests compare outputs; they set dropout where they need it
    kwargs.update(overrides)
    return cls(**kwargs)


def make_batch(spec: DataSpec, batch: int = B, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = {}
    for key, shape in spec.obs_shapes.items():
        if len(shape) == 1:
            obs[key] = torch.randn(batch, spec.obs_horizon, *shape, generator=g) * 2 + 1
        else:
            obs[key] = torch.randint(
                0, 256, (batch, spec.obs_horizon, *shape), generator=g, dtype=torch.uint8
            )
    return {
        OBS: obs,
        ACTIONS: torch.rand(batch, spec.action_horizon, spec.action_dim, generator=g) * 2 - 1,
        ACTION_MASK: torch.ones(batch, spec.action_horizon, dtype=torch.bool),
        LABEL: torch.zeros(batch, dtype=torch.long),
        INSTRUCTION: torch.randint(0, spec.num_instructions, (batch,), generator=g),
        EPISODE: torch.arange(batch),
    }


def step_obs(batch: dict, t: int) -> dict:
    """The observation of step t of the window, as the environment gives it: (B, ...)."""
    return {key: x[:, t] for key, x in batch[OBS].items()}


def window(steps: list[dict], upto: int, length: int) -> dict:
    """The window the policy should see after step ``upto``: padded at the start by repeating step 0."""
    idx = [max(0, upto - length + 1 + i) for i in range(length)]
    return {key: torch.stack([steps[i][key] for i in idx], dim=1) for key in steps[0]}  # (B, length, ...)


def build(config: PolicyConfig, spec: DataSpec, seed: int = 0):
    torch.manual_seed(seed)
    return build_policy(config, spec)


STATS = {
    key: {"mean": torch.full(shape, 1.0).numpy(), "std": torch.full(shape, 2.0).numpy()}
    for key, shape in LOW_DIM.items()
}


def case(policy: str, head: str, images: bool):
    """One (policy, head, images) case. The diffusion head's denoiser is the heaviest model here:
    beside its own policy on low-dim data it stays in the default tier (tests/test_diffusion_act.py
    covers what it learns); on the other trunks and on images it joins the slow tier."""
    slow = head == "diffusion" and (policy, images) != ("diffusion", False)
    name = f"{policy}-{head}" + ("-image" if images else "")
    return pytest.param(policy, head, images, id=name, marks=[pytest.mark.slow] if slow else [])


CASES = [case(p, h, False) for p in sorted(POLICIES.configs) for h in sorted(HEADS.configs) if takes(p, h)]
IMAGE_HEADS = {p: "chunk" if takes(p, "chunk") else default_head(p) for p in sorted(POLICIES.configs)}
CASES += [case(p, h, True) for p, h in IMAGE_HEADS.items()]
CASES += [pytest.param("bc_mlp", "gmm", True, id="bc_mlp-gmm-image")]


def test_registries_hold_the_expected_names():
    assert {"bc_mlp", "bc_rnn", "bc_transformer", "diffusion", "act"} <= set(POLICIES.configs)
    assert {"deterministic", "gmm", "chunk", "diffusion"} <= set(HEADS.configs)


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("policy_name, head, images", CASES)
def test_training_steps_lower_the_loss(policy_name, head, images):
    spec = make_spec(images)
    policy = build(make_config(policy_name, head, images), spec)
    policy.fit_normalization(STATS)
    # A denoising loss averages over random noise levels, one per row: more rows make it steady.
    batch = make_batch(spec, batch=32 if head == "diffusion" else B)
    policy.eval()
    before = policy.loss(batch)[0].item()
    optim = torch.optim.Adam(policy.parameters(), lr=3e-3)
    policy.train()
    for _ in range(25):
        loss, metrics = policy.loss(batch)
        assert math.isfinite(metrics["loss"]) and set(metrics) >= {"loss"}
        optim.zero_grad()
        loss.backward()
        optim.step()
    policy.eval()
    after = policy.loss(batch)[0].item()
    assert after < before - 0.05 * abs(before), (before, after)


@pytest.mark.parametrize("policy_name, head, images", CASES)
def test_save_and_load_give_identical_outputs(policy_name, head, images, tmp_path):
    spec = make_spec(images)
    config = make_config(policy_name, head, images)
    policy = build(config, spec, seed=0)
    policy.fit_normalization(STATS)  # the statistics must travel with the weights
    batch = make_batch(spec)
    torch.save(policy.state_dict(), tmp_path / "policy.pt")

    fresh = build(config, spec, seed=1)
    policy.eval()
    fresh.eval()
    assert not torch.equal(policy.features(batch), fresh.features(batch))  # else the test proves nothing
    fresh.load_state_dict(torch.load(tmp_path / "policy.pt", weights_only=True))

    assert torch.equal(policy.features(batch), fresh.features(batch))
    policy.reset()
    fresh.reset()
    for t in range(TO):
        obs = step_obs(batch, t)
        torch.manual_seed(t)  # a diffusion head samples: the same noise for both
        a = policy.predict_action(obs, batch[INSTRUCTION])
        torch.manual_seed(t)
        assert torch.equal(a, fresh.predict_action(obs, batch[INSTRUCTION]))


@pytest.mark.parametrize("policy_name, head, images", CASES)
def test_features_shape_and_gradient(policy_name, head, images):
    spec = make_spec(images)
    policy = build(make_config(policy_name, head, images), spec)
    batch = make_batch(spec)
    feats = policy.features(batch)
    assert feats.shape == (B, policy.feature_dim)
    assert policy.feature_dim == policy.trunk_dim  # the default tap: the head's input
    feats.square().sum().backward()  # alignment trains through the features
    assert policy.encoder.encoders["robot_state"].net[0].weight.grad.abs().sum() > 0

    policy.eval()
    loss, _, both = policy.loss_and_features(batch)
    assert torch.allclose(both, policy.features(batch))
    assert torch.allclose(loss, policy.loss(batch)[0])


@pytest.mark.parametrize("policy_name, head, images", CASES)
def test_predict_action_step_by_step(policy_name, head, images):
    spec = make_spec(images)
    policy = build(make_config(policy_name, head, images), spec)
    with torch.no_grad():  # blow the outputs up so that only the clamp keeps them in range
        for p in policy.head.parameters():
            p.mul_(100.0)
    policy.eval()
    for batch_size in (B, 2):  # reset must also forget the old batch size
        batch = make_batch(spec, batch=batch_size)
        policy.reset()
        for t in range(TA + 2):
            action = policy.predict_action(step_obs(batch, t % TO), batch[INSTRUCTION])
            assert action.shape == (batch_size, A) and action.dtype == torch.float32
            assert action.abs().max() <= 1.0
    with pytest.raises(KeyError, match="robot_state"):
        policy.predict_action({"goal": batch[OBS]["goal"][:, 0]}, batch[INSTRUCTION])


@pytest.mark.parametrize("policy_name, head, images", CASES)
def test_padding_does_not_change_the_loss(policy_name, head, images):
    spec = make_spec(images)
    policy = build(make_config(policy_name, head, images), spec).eval()
    batch = make_batch(spec)
    batch[ACTION_MASK][0, 1:] = False  # row 0: the episode ends after the first action
    batch[ACTION_MASK][1, :] = False  # row 1: padding only
    loss = policy.loss(batch)[0]

    padded = {**batch, ACTIONS: batch[ACTIONS].clone()}
    padded[ACTIONS][~batch[ACTION_MASK]] = float("nan")  # whatever padding holds must not leak in
    assert torch.equal(policy.loss(padded)[0], loss)

    real = {**batch, ACTIONS: batch[ACTIONS].clone()}
    real[ACTIONS][2, 0] = -real[ACTIONS][2, 0]  # a real action does count
    assert not torch.equal(policy.loss(real)[0], loss)


# --------------------------------------------------------------------------- rollout state
@pytest.mark.parametrize("policy_name", [p for p in sorted(POLICIES.configs) if takes(p, "deterministic")])
def test_single_step_heads_predict_every_step_from_the_history(policy_name):
    spec = make_spec()
    policy = build(make_config(policy_name, "deterministic"), spec).eval()
    batch = make_batch(spec)
    steps = [step_obs(batch, t) for t in range(TO)] + [
        step_obs(make_batch(spec, seed=1), t) for t in range(TO)
    ]
    policy.reset()
    for t, obs in enumerate(steps):
        action = policy.predict_action(obs, batch[INSTRUCTION])
        expected = policy.predict_chunk(window(steps, t, policy.obs_steps), batch[INSTRUCTION])[:, 0]
        assert torch.equal(action, expected)
    # After reset the history starts over: step 0 again gives the first action.
    policy.reset()
    first = policy.predict_chunk(window(steps, 0, policy.obs_steps), batch[INSTRUCTION])[:, 0]
    assert torch.equal(policy.predict_action(steps[0], batch[INSTRUCTION]), first)


@pytest.mark.parametrize("policy_name", [p for p in sorted(POLICIES.configs) if takes(p, "chunk")])
def test_chunking_returns_the_queued_actions_in_order(policy_name):
    spec = make_spec()
    n = TA - 1
    policy = build(make_config(policy_name, ChunkHeadConfig(execute_steps=n)), spec).eval()
    batch = make_batch(spec)
    steps = [step_obs(make_batch(spec, seed=s), 0) for s in range(2 * n)]  # a new observation every step
    policy.reset()
    actions = [policy.predict_action(obs, batch[INSTRUCTION]) for obs in steps]
    for start in (0, n):  # a chunk is predicted at steps 0 and n only, from the window at that step
        chunk = policy.predict_chunk(window(steps, start, policy.obs_steps), batch[INSTRUCTION])  # (B, Ta, A)
        for i in range(n):
            assert torch.equal(actions[start + i], chunk[:, i]), (start, i)


@pytest.mark.parametrize("policy_name", [p for p in sorted(POLICIES.configs) if takes(p, "chunk")])
def test_temporal_ensembling_averages_overlapping_predictions(policy_name):
    spec = make_spec()
    m = 0.5
    policy = build(
        make_config(policy_name, ChunkHeadConfig(temporal_ensemble=True, ensemble_coeff=m)), spec
    ).eval()
    batch = make_batch(spec)
    steps = [step_obs(make_batch(spec, seed=s), 0) for s in range(TA + 2)]
    chunks = [
        policy.predict_chunk(window(steps, t, policy.obs_steps), batch[INSTRUCTION])
        for t in range(len(steps))
    ]
    policy.reset()
    for t, obs in enumerate(steps):
        action = policy.predict_action(obs, batch[INSTRUCTION])
        # chunks predicted at s = t-Ta+1 .. t hold a prediction for t, at index t - s; oldest weighs most
        sources = range(max(0, t - TA + 1), t + 1)
        weights = [math.exp(-m * i) for i in range(len(sources))]
        expected = sum(w * chunks[s][:, t - s] for w, s in zip(weights, sources, strict=True)) / sum(weights)
        assert torch.allclose(action, expected, atol=1e-6), t
    assert not torch.allclose(action, chunks[-1][:, 0])  # the ensemble is not just the newest chunk


# --------------------------------------------------------------------------- feature taps
TAPS = [
    ("bc_mlp", "encoder", 3 * 16 + 16),  # three low-dim and one image key, concatenated
    ("bc_mlp", "trunk.net.0", 32),
    ("bc_mlp", "encoder.encoders.corner_image.backbone.3", 8),  # a conv map (B*T, C, h, w)
    ("bc_mlp", "head", A),
    ("bc_rnn", "trunk.lstm", 32),
    ("bc_rnn", "conditioning", 3 * 16 + 16 + 8),
    ("bc_rnn", "encoder.encoders.corner_image.backbone.3", 8),  # per-frame layers see (B*T, ...)
    ("bc_transformer", "encoder.encoders.goal", 16),
    ("bc_transformer", "trunk.encoder.layers.0", 32),
    ("diffusion", "encoder", 3 * 16 + 16),  # the observation features, before the instruction enters
    ("diffusion", "head.unet.mid.0.film", 2 * 32),  # the scale and shift of a U-Net block
    ("act", "encoder.encoders.corner_image", 16),
    ("act", "trunk.encoder", 32),
]


@pytest.mark.parametrize("policy_name, tap, dim", TAPS)
def test_feature_tap_on_another_layer(policy_name, tap, dim):
    spec = make_spec(images=True)
    default = build(make_config(policy_name, images=True), spec).eval()
    policy = build(make_config(policy_name, images=True, feature_tap=tap), spec).eval()
    batch = make_batch(spec)
    feats = policy.features(batch)
    assert policy.feature_dim == dim
    assert feats.shape == (B, dim)
    assert not torch.equal(feats[:, : min(dim, 32)], default.features(batch)[:, : min(dim, 32)])


def test_unknown_feature_tap_is_a_user_error():
    with pytest.raises(UserError, match="trunk.net.0"):  # the message lists the valid layers
        build(make_config("bc_mlp", feature_tap="trunk.nope"), make_spec())


# --------------------------------------------------------------------------- conditioning
@pytest.mark.parametrize("conditioning", ["none", "concat", "film"])
def test_instruction_conditioning(conditioning):
    spec = make_spec()
    policy = build(make_config("bc_mlp", conditioning=conditioning), spec)
    batch = make_batch(spec, batch=6)
    for key in batch[OBS]:  # the same observation under three instructions with opposite targets
        batch[OBS][key] = batch[OBS][key][:1].expand_as(batch[OBS][key]).clone()
    batch[INSTRUCTION] = torch.tensor([0, 1, 2, 0, 1, 2])
    batch[ACTIONS] = (batch[INSTRUCTION].float() - 1.0)[:, None, None].expand(-1, TA, A).clone()
    optim = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(10):
        loss, _ = policy.loss(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
    policy.eval()
    obs = step_obs(batch, TO - 1)
    actions = [
        policy.predict_chunk({k: v[:, None] for k, v in obs.items()}, torch.full((6,), i)) for i in range(3)
    ]
    if conditioning == "none":
        assert torch.equal(actions[0], actions[2])
    else:
        assert (actions[2] - actions[0]).mean() > 0.2  # instruction 2 wants +1, instruction 0 wants -1


# --------------------------------------------------------------------------- pieces
def test_gmm_predicts_the_mean_of_the_most_likely_component():
    head = GMMHead(GMMHeadConfig(modes=4), in_dim=8, action_dim=A).eval()
    z = torch.randn(B, 8)
    means, scales, logits = head(z)
    assert means.shape == (B, 4, A) and scales.shape == (B, 4, A) and logits.shape == (B, 4)
    assert scales.min() >= 1e-4
    expected = means[torch.arange(B), logits.argmax(-1)]  # (B, A)
    assert torch.equal(head.predict(z), expected[:, None])


def test_gmm_tanh_squash_handles_saturated_actions():
    spec = make_spec()
    policy = build(make_config("bc_mlp", GMMHeadConfig(tanh_squash=True)), spec)
    batch = make_batch(spec)
    batch[ACTIONS] = batch[ACTIONS].sign()  # scripted experts often saturate at +-1
    optim = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        loss, _ = policy.loss(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_crop_is_random_in_training_and_centred_in_evaluation():
    images = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10)
    centre = crop(images, 0.8, random=False)
    assert torch.equal(centre, images[:, :, 1:9, 1:9])
    torch.manual_seed(0)
    tops = set()
    for _ in range(20):
        out = crop(images, 0.8, random=True)
        assert out.shape == (2, 3, 8, 8)
        for n in range(2):
            top, left = divmod(int(out[n, 0, 0, 0].item()) - n * 300, 10)
            assert torch.equal(out[n], images[n, :, top : top + 8, left : left + 8])
            tops.add((top, left))
    assert len(tops) > 1


def test_normalisation_statistics_change_the_output_and_are_checked():
    spec = make_spec()
    policy = build(make_config("bc_mlp"), spec).eval()
    batch = make_batch(spec)
    before = policy.features(batch)
    policy.fit_normalization(STATS)
    assert not torch.allclose(before, policy.features(batch))
    with pytest.raises(ValueError, match="goal"):
        policy.fit_normalization({k: v for k, v in STATS.items() if k != "goal"})


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "make",
    [
        lambda: GMMHeadConfig(modes=0),
        lambda: GMMHeadConfig(min_std=0.0),
        lambda: GMMHeadConfig(predict="median"),
        lambda: DeterministicHeadConfig(loss="huber"),
        lambda: ChunkHeadConfig(execute_steps=0),
        lambda: ChunkHeadConfig(temporal_ensemble=True, execute_steps=2),
        lambda: ChunkHeadConfig(ensemble_coeff=float("nan")),
        lambda: BCMLPConfig(obs_keys=[]),
        lambda: BCMLPConfig(obs_keys=["goal", "goal"]),
        lambda: BCMLPConfig(hidden_dim=0),
        lambda: BCMLPConfig(dropout=1.0),
        lambda: BCMLPConfig(crop_fraction=0.0),
        lambda: BCMLPConfig(conditioning="xattn"),
        lambda: BCRNNConfig(history=0),
        lambda: BCTransformerConfig(hidden_dim=30, num_heads=4),
        lambda: DiffusionHeadConfig(horizon=8, n_action_steps=9),
        lambda: DiffusionHeadConfig(horizon=6, down_dims=[16, 32, 64]),  # 6 is not divisible by 4
        lambda: DiffusionHeadConfig(down_dims=[12], n_groups=8),
        lambda: DiffusionHeadConfig(num_train_timesteps=10, num_inference_steps=20),
        lambda: DiffusionHeadConfig(kernel_size=4),
        lambda: DiffusionConfig(head=ChunkHeadConfig()),  # its action model is the denoiser
        lambda: ACTConfig(head=DeterministicHeadConfig()),  # ACT predicts chunks
        lambda: ACTConfig(hidden_dim=30, num_heads=4),
        lambda: ACTConfig(kl_weight=-1.0),
        lambda: ACTConfig(latent_dim=0),
    ],
)
def test_invalid_configs_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "config, match",
    [
        (lambda: make_config("bc_mlp", obs_keys=["robot_state", "wrist_image"]), "wrist_image"),
        (lambda: make_config("bc_rnn", history=TO + 1), "obs_horizon"),
        (lambda: make_config("bc_mlp", ChunkHeadConfig(execute_steps=TA + 1)), "execute_steps"),
        (lambda: dataclasses.replace(make_config("bc_mlp"), name="bc_rnn"), "BCRNNConfig"),
        (
            lambda: make_config("diffusion", DiffusionHeadConfig(**{**TINY_DIFFUSION, "horizon": 2 * TA})),
            "data.action_horizon",
        ),
    ],
)
def test_config_and_data_mismatch_is_a_user_error(config, match):
    with pytest.raises(UserError, match=match):
        build_policy(config(), make_spec())


def test_configs_load_from_dicts_and_round_trip():
    raw = {"name": "bc_transformer", "history": 4, "head": {"name": "chunk", "execute_steps": 2}}
    config = from_dict(PolicyConfig, raw)
    assert isinstance(config, BCTransformerConfig) and isinstance(config.head, ChunkHeadConfig)
    assert config.obs_steps == 4 and config.head.execute_steps == 2
    assert from_dict(PolicyConfig, to_dict(config)) == config
    with pytest.raises(UserError, match="modes"):  # valid keys are listed
        from_dict(PolicyConfig, {"name": "bc_mlp", "head": {"name": "gmm", "mode": 3}})
    with pytest.raises(UserError, match="at least 1"):  # __post_init__'s ValueError, as a user error
        from_dict(PolicyConfig, {"name": "bc_mlp", "head": {"name": "gmm", "modes": 0}})


@pytest.mark.parametrize(
    "config_cls", [*POLICIES.configs.values(), *HEADS.configs.values()], ids=lambda c: c.__name__
)
def test_every_config_field_is_documented(config_cls):
    docs = field_docs(config_cls)
    undocumented = [f.name for f in dataclasses.fields(config_cls) if not docs.get(f.name)]
    assert not undocumented
