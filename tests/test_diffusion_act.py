"""Diffusion Policy and ACT: what the contract tests (test_policies.py) do not see.

Shapes and padding on a hand-made batch; the denoiser learns a bimodal toy that BC-MLP
averages; ACT's KL term and its inference without the CVAE encoder; the action queue and the
ensembler forget the last episode; a run resumes bit for bit and its EMA weights are the ones
saved and loaded for evaluation. Tiny models, synthetic data: a few seconds in all.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from test_policies import STATS, TA, TINY_DIFFUSION, make_batch, make_config, make_spec, step_obs, window
from test_train import REPO, assert_same_training, make, write_task

from embodied.config import load_config
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.keys import ACTION_MASK, ACTIONS, INSTRUCTION, OBS
from embodied.policies import (
    ACTConfig,
    BCMLPConfig,
    ChunkHeadConfig,
    DiffusionConfig,
    DiffusionHeadConfig,
    build_policy,
)
from embodied.policies.diffusion import edge_padded
from embodied.train import TrainConfig, load_model, train
from embodied.train.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

A, B, K = 3, 4, TA


def tiny_diffusion(**head) -> DiffusionConfig:
    return make_config("diffusion", DiffusionHeadConfig(**{**TINY_DIFFUSION, **head}))


def tiny_act(**overrides) -> ACTConfig:
    return make_config("act", **overrides)


# --------------------------------------------------------------------------- shapes and masks
def test_shapes_and_padding_on_a_hand_made_batch():
    spec = make_spec()
    dp = build_policy(tiny_diffusion(horizon=K, n_action_steps=2), spec).eval()
    act = build_policy(tiny_act(), spec).eval()
    batch = make_batch(spec, batch=B)
    for policy in (dp, act):
        assert policy.predict_chunk(batch[OBS], batch[INSTRUCTION]).shape == (B, K, A)
        assert policy.features(batch).shape == (B, policy.feature_dim)
    assert dp.feature_dim == dp.obs_steps * dp.conditioning.out_dim  # To steps side by side
    assert act.feature_dim == act.config.hidden_dim

    # Padding past the episode's end repeats the last real action (the paper's sampler pads so);
    # a row of padding only (an action-free window) is zeros.
    actions = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 9.0, 9.0, 9.0]])[..., None]
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [False] * 4])
    filled = edge_padded(torch.where(mask[..., None], actions, 0.0), mask)[..., 0]  # (3, K)
    assert filled.tolist() == [[1.0, 2.0, 2.0, 2.0], [5.0, 6.0, 7.0, 8.0], [0.0] * 4]

    # Windows without a single real action teach neither policy anything.
    empty = {**batch, ACTION_MASK: torch.zeros(B, K, dtype=torch.bool)}
    for policy in (dp, act):
        policy.train()
        loss = policy.loss(empty)[0]
        loss.backward()
        assert loss.item() == 0.0
        assert all(p.grad is None or not p.grad.any() for p in policy.parameters())


def test_diffusion_needs_the_data_to_hold_its_horizon():
    with pytest.raises(UserError, match="set data.action_horizon to 8"):
        build_policy(tiny_diffusion(horizon=8), make_spec())  # the windows hold TA = 4 actions


# --------------------------------------------------------------------------- a bimodal toy
def test_diffusion_learns_both_modes_where_bc_mlp_averages_them():
    """One observation, two equally likely demonstrated chunks: all +0.8 or all -0.8. The mean
    squared error's minimiser is their average, 0; the denoiser's samples land on one mode or
    the other (Chi et al. 2023, Sec. V-A: multi-modal action distributions)."""
    spec = DataSpec(
        obs_shapes={"state": [2]}, action_dim=1, num_instructions=1, obs_horizon=1, action_horizon=K
    )
    gen = torch.Generator().manual_seed(1)

    def batch(n: int) -> dict:
        mode = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1  # (n,): -1 or +1
        return {
            OBS: {"state": torch.zeros(n, 1, 2)},
            ACTIONS: (0.8 * mode)[:, None, None].expand(n, K, 1).clone(),  # (n, K, 1)
            ACTION_MASK: torch.ones(n, K, dtype=torch.bool),
        }

    small = dict(low_dim_embed=8, conditioning="none", obs_keys=["state"])
    # 20 noise steps (not the paper's 100) so that 100 updates learn the toy.
    head = DiffusionHeadConfig(
        horizon=K, n_action_steps=K, down_dims=[16], n_groups=4, step_embed_dim=16, num_train_timesteps=20
    )
    configs = {
        "bc_mlp": BCMLPConfig(hidden_dim=32, head=ChunkHeadConfig(loss="mse"), **small),
        "diffusion": DiffusionConfig(history=1, head=head, **small),
    }
    chunks, losses = {}, []
    for name, config in configs.items():
        torch.manual_seed(0)
        policy = build_policy(config, spec)
        optim = torch.optim.Adam(policy.parameters(), lr=1e-2)
        for _ in range(100):
            loss, _ = policy.loss(batch(64))
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(loss.item())
        torch.manual_seed(2)
        chunks[name] = policy.eval().predict_chunk({"state": torch.zeros(200, 1, 2)})[..., 0]  # (200, K)

    dp_losses = losses[100:]
    assert sum(dp_losses[-20:]) < 0.3 * sum(dp_losses[:20]), "the denoising loss did not fall"
    assert chunks["bc_mlp"].abs().mean() < 0.2  # the average of the modes
    dp = chunks["diffusion"]
    assert ((dp.abs() - 0.8).abs() < 0.25).float().mean() > 0.8  # samples land on a mode ...
    positive = (dp.mean(dim=1) > 0).float().mean()
    assert 0.2 < positive < 0.8  # ... on both modes
    assert dp.std(dim=1).mean() < 0.15  # and a chunk stays on its mode


# --------------------------------------------------------------------------- ACT
def test_act_kl_term_and_its_weight():
    spec = make_spec()
    policy = build_policy(tiny_act(kl_weight=10.0), spec)
    latent = policy.config.latent_dim
    with torch.no_grad():  # q(z | a, o) = N(0.5, 2 I) for every input
        policy.cvae.out.weight.zero_()
        policy.cvae.out.bias.copy_(torch.cat([torch.full((latent,), 0.5), torch.full((latent,), 2.0).log()]))
    batch = make_batch(spec, batch=B)
    policy.eval()
    loss, metrics = policy.loss(batch)
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 * (mu^2 + s^2 - 1 - log s^2) per dimension
    expected = 0.5 * latent * (0.25 + 2.0 - 1.0 - torch.log(torch.tensor(2.0)).item())
    assert metrics["kl"] == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(metrics["recon"] + 10.0 * metrics["kl"], rel=1e-6)
    # In eval mode the chunk is decoded from z = 0, as at inference: the L1 of the forward pass.
    l1 = (policy(batch[OBS], batch[INSTRUCTION]) - batch[ACTIONS]).abs().mean()
    assert metrics["recon"] == pytest.approx(l1.item(), rel=1e-5)

    # In training z is a draw from q, so the reconstruction differs from z = 0's.
    policy.train()
    torch.manual_seed(0)
    assert policy.loss(batch)[1]["recon"] != pytest.approx(metrics["recon"], rel=1e-4)


def test_act_inference_runs_without_the_cvae_encoder():
    spec = make_spec()
    policy = build_policy(tiny_act(), spec).eval()
    calls = []
    policy.cvae.register_forward_hook(lambda *args: calls.append(1))
    batch = make_batch(spec, batch=B)
    before = policy.predict_chunk(batch[OBS], batch[INSTRUCTION])
    with torch.no_grad():
        for p in policy.cvae.parameters():
            p.add_(1.0)  # another encoder changes nothing at inference
    assert torch.equal(policy.predict_chunk(batch[OBS], batch[INSTRUCTION]), before)
    policy.reset()
    for t in range(3):
        policy.predict_action(step_obs(batch, t), batch[INSTRUCTION])
    assert not calls
    policy.train().loss(batch)
    assert len(calls) == 1  # training does run it


# --------------------------------------------------------------------------- rollout state
@pytest.mark.parametrize("which", ["diffusion", "act-ensemble"])
def test_the_action_queue_starts_over_at_each_episode(which):
    spec = make_spec()
    if which == "diffusion":
        config = tiny_diffusion(n_action_steps=2)
    else:
        config = tiny_act(head=ChunkHeadConfig(temporal_ensemble=True, ensemble_coeff=0.5))
    policy = build_policy(config, spec).eval()
    old, new = make_batch(spec, batch=B, seed=0), make_batch(spec, batch=B, seed=1)
    policy.reset()
    for t in range(3):  # the first episode stops mid-chunk
        torch.manual_seed(100 + t)
        policy.predict_action(step_obs(old, t), old[INSTRUCTION])
    assert len(policy.queue) == 1 or len(policy.ensembler.chunks) == 3

    policy.reset()  # the evaluation calls it at every episode start
    assert len(policy.queue) == 0 and (policy.ensembler is None or len(policy.ensembler.chunks) == 0)
    first = step_obs(new, 0)
    torch.manual_seed(7)
    action = policy.predict_action(first, new[INSTRUCTION])
    torch.manual_seed(7)  # a fresh chunk from the new episode's first observation, history repeated
    expected = policy.predict_chunk(window([first], 0, policy.obs_steps), new[INSTRUCTION])[:, 0]
    assert torch.equal(action, expected)


def test_a_pickled_diffusion_policy_samples_as_the_original():
    """Evaluation workers get the policy pickled, the diffusers schedulers with it."""
    spec = make_spec()
    policy = build_policy(tiny_diffusion(), spec)
    policy.fit_normalization(STATS)
    policy.eval()
    copy = pickle.loads(pickle.dumps(policy))
    batch = make_batch(spec, batch=B)
    torch.manual_seed(3)
    a = policy.predict_chunk(batch[OBS], batch[INSTRUCTION])
    torch.manual_seed(3)
    assert torch.equal(a, copy.predict_chunk(batch[OBS], batch[INSTRUCTION]))
    torch.manual_seed(4)  # and the samples do depend on the noise
    assert not torch.equal(a, copy.predict_chunk(batch[OBS], batch[INSTRUCTION]))


# --------------------------------------------------------------------------- training runs
POLICY_RUNS = {
    "diffusion": {
        "name": "diffusion",
        "low_dim_embed": 8,
        "instruction_dim": 4,
        "head": {**TINY_DIFFUSION, "name": "diffusion", "num_train_timesteps": 20},
    },
    "act": {
        "name": "act",
        "hidden_dim": 16,
        "num_heads": 2,
        "num_layers": 1,
        "vae_layers": 1,
        "feedforward_dim": 32,
        "latent_dim": 4,
        "low_dim_embed": 8,
        "instruction_dim": 4,
    },
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demos")
    for task in range(2):
        write_task(folder / f"task{task}.hdf5", task)
    return folder


def run_config(name: str, demos, out, **extra):
    return make(
        "policy",
        demos,
        out,
        policy=POLICY_RUNS[name],
        **{
            "data.action_horizon": K,
            "optim.ema": 0.9,  # the DP configs turn EMA on
            "optim.schedule": "constant",  # so a run of 3 steps is the first half of one of 6
            **extra,
        },
    )


@pytest.mark.parametrize("name", ["diffusion", "act"])
def test_a_resumed_run_is_bit_identical_and_its_ema_weights_are_evaluated(name, demos, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    train(run_config(name, demos, whole))  # 6 steps, checkpoints at 3 and 6
    train(run_config(name, demos, halves, steps=3))
    train(run_config(name, demos, halves), resume=True)
    a, b = read_checkpoint(whole), read_checkpoint(halves)
    assert a["train"]["step"] == b["train"]["step"] == 6
    assert_same_training(a, b)  # EMA weights, trained weights and optimiser state, bit for bit

    # The checkpoint's policy is the EMA of the weights, not the trained ones ...
    ema, trained = a["models"]["policy"]["state"], a["train"]["weights"]
    prefix = "models.policy."
    differ = [k for k, v in ema.items() if v.is_floating_point() and not torch.equal(v, trained[prefix + k])]
    assert differ, "EMA weights equal the trained ones: the test would prove nothing"
    # ... and what evaluation loads (embodied-eval calls load_model) is that average.
    policy = load_model(whole).models["policy"]
    assert not policy.training
    for k, v in policy.state_dict().items():
        assert torch.equal(v, ema[k]), k


# --------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize(
    "name",
    [
        "policy_quick_diffusion",
        "policy_quick_act",
        "policy_mt10_diffusion",
        "policy_mt10_act",
        "policy_visual_diffusion",
        "joint_visual_diffusion",
    ],
)
def test_the_shipped_configs_load_and_their_windows_fit(name):
    cfg = load_config(TrainConfig, REPO / "configs" / f"{name}.yaml")
    assert cfg.policy.name in name and cfg.data.obs_horizon == cfg.policy.obs_steps
    if cfg.policy.name == "diffusion":
        assert cfg.data.action_horizon == cfg.policy.head.horizon and cfg.optim.ema > 0
    if "visual" in name:  # the alignment tap: the image encoder's output, as policy_visual's
        assert cfg.policy.feature_tap == "encoder.encoders.corner_image" and cfg.policy.conditioning == "none"
