"""What the training speed paths must not change (issue 12): the same outputs, the same checkpoints.

- channels-last memory gives the same loss and gradients as contiguous memory, up to rounding;
- bf16 autocast on a CPU gives the fp32 loss and features within bf16's precision, and the
  default precision on a CPU stays fp32 (no autocast, no scaler);
- compiled backbones keep the parameter names, load a checkpoint of the eager model and give
  its loss; a compiled policy still pickles (rollout workers);
- the foreach AdamW and gradient clipping, the flat-buffer AdamW (FlatAdamW) with its clipping,
  and the faster random crop, are bit-identical to the per-tensor and per-pixel code they
  replace; FlatAdamW's checkpoints are torch AdamW's.

Speed itself is shown by ``tools/bench_train.py --peak --baseline``, not by timed tests.
"""

from __future__ import annotations

import contextlib
import copy
import pickle

import numpy as np
import pytest
import torch

from embodied import keys as K
from embodied.config import from_dict
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.policies.encoders import crop
from embodied.train import TrainConfig
from embodied.train.config import RESUME_FREE_KEYS
from embodied.train.objective import TrainModule
from embodied.train.optim import FlatAdamW, make_optimizer, make_scheduler, param_groups
from embodied.train.step import precision, seed_everything, update_step

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, S = 4, 4, 16
SPEC = DataSpec(
    obs_shapes={"robot_state": [4], "corner_image": [3, S, S]},
    action_dim=4,
    num_classes=2,
    num_instructions=2,
    clip_len=T,
    image_size=S,
    classes=["a", "b"],
    instructions=["do a", "do b"],
    tasks=["a", "b"],
    task_labels=[0, 1],
    task_instructions=[0, 1],
)
STATS = {"robot_state": {"mean": np.zeros(4, np.float32), "std": np.ones(4, np.float32)}}


def joint_config(**extra) -> TrainConfig:
    raw = {
        "mode": "joint",
        "data": {
            "paths": ["unused"],
            "batch_size": B,
            "clip_len": T,
            "obs_keys": ["robot_state", "corner_image"],
        },
        "policy": {
            "name": "bc_mlp",
            "obs_keys": ["robot_state", "corner_image"],
            "hidden_dim": 32,
            "conditioning": "film",
            "image_embed": 16,
            "image_channels": 8,
            "image_keypoints": 8,
            "feature_tap": "encoder.encoders.corner_image",
        },
        "recognizer": {"name": "conv3d", "width": 8, "depth": 2, "dropout": 0.0},
        "mirror": {"dim": 16},
        "optim": {"warmup_steps": 0},
        **extra,
    }
    return from_dict(TrainConfig, raw)


def build(cfg: TrainConfig, seed: int = 0) -> TrainModule:
    seed_everything(seed)
    models, _ = cfg.objective.build_models(cfg, SPEC, STATS, {})
    return TrainModule(cfg.objective, models)


def make_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    label = torch.tensor([0, 1, 0, 1])
    return {
        K.LABEL: label,
        K.INSTRUCTION: label.clone(),
        K.EPISODE: torch.arange(B),
        K.OBS: {
            "robot_state": torch.randn(B, 1, 4, generator=g),
            "corner_image": torch.randint(0, 256, (B, 1, 3, S, S), dtype=torch.uint8, generator=g),
        },
        K.ACTIONS: torch.rand(B, 1, 4, generator=g) * 2 - 1,
        K.ACTION_MASK: torch.ones(B, 1, dtype=torch.bool),
        K.VIDEO: torch.randint(0, 256, (B, T, 3, S, S), dtype=torch.uint8, generator=g),
    }


def loss_and_grads(module: TrainModule, batch: dict, seed: int = 1, autocast=contextlib.nullcontext):
    """Training-mode loss (random crops, dropout drawn from ``seed``), features and gradients."""
    module.train()
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    with autocast():
        loss, _, features = module.compute(batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return loss.detach(), features, grads


def optimizer_of(module: TrainModule, cfg: TrainConfig, foreach: bool = True):
    groups = param_groups(dict(module.models.items()), cfg.optim, {"mirror": cfg.mirror.lr})
    opt = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), foreach=foreach)
    return opt, make_scheduler(opt, cfg.optim, 100)


def convs(module: TrainModule) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]


# --------------------------------------------------------------------------- channels-last
def test_channels_last_gives_the_same_loss_gradients_and_state():
    cfg = joint_config()
    plain, fast = build(cfg), build(cfg)
    fast.use_channels_last()
    for m in convs(fast):
        fmt = torch.channels_last if m.weight.dim() == 4 else torch.channels_last_3d
        assert m.weight.is_contiguous(memory_format=fmt)
    assert any(m.weight.dim() == 4 for m in convs(fast)) and any(m.weight.dim() == 5 for m in convs(fast))
    # the state dict holds the same values under the same names: checkpoints do not change
    a, b = plain.state_dict(), fast.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)

    batch = make_batch()
    loss_a, feats_a, grads_a = loss_and_grads(plain, batch)
    loss_b, feats_b, grads_b = loss_and_grads(fast, batch)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    for fa, fb in zip(feats_a, feats_b, strict=True):
        torch.testing.assert_close(fb, fa, rtol=1e-4, atol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    scale = max(g.abs().max().item() for g in grads_a.values())  # some are zero up to rounding
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-5 * scale, msg=name)

    # an optimiser step keeps the layout
    for module in (plain, fast):
        opt, sched = optimizer_of(module, cfg)
        update_step(module, batch, opt, sched, grad_clip=1.0)
    for m in convs(fast):
        assert m.weight.is_contiguous(memory_format=torch.channels_last) or m.weight.is_contiguous(
            memory_format=torch.channels_last_3d
        )
    # (The weights are not compared after the step: Adam's first step moves each by about
    # lr * sign(grad), so a gradient that is zero up to rounding may move either way.)


# --------------------------------------------------------------------------- autocast
def test_default_precision_on_a_cpu_is_fp32():
    cpu = torch.device("cpu")
    for mode in ("auto", "fp32"):
        autocast, scaler = precision(cpu, mode)
        assert scaler is None
        with autocast():
            assert not torch.is_autocast_enabled("cpu")
    autocast, _ = precision(cpu)  # the old call: still no autocast on a CPU
    with autocast():
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision"):
        precision(cpu, "fp16")


def test_bf16_autocast_stays_close_to_fp32():
    cfg = joint_config()
    module = build(cfg)
    autocast, scaler = precision(torch.device("cpu"), "bf16")
    assert scaler is None
    with autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    batch = make_batch()
    loss32, feats32, grads32 = loss_and_grads(module, batch)
    loss16, feats16, grads16 = loss_and_grads(module, batch, autocast=autocast)
    assert loss16.dtype == torch.float32  # the loss is reduced in fp32 (autocast's fp32 ops)
    torch.testing.assert_close(loss16, loss32, rtol=3e-2, atol=3e-2)
    for f32, f16 in zip(feats32, feats16, strict=True):
        cos = torch.nn.functional.cosine_similarity(f16.float(), f32, dim=-1)
        assert cos.min() > 0.98, cos
    # every gradient is finite, and those that are exactly 0 in fp32 (the residual branches,
    # whose last batch norm starts at zero scale) are exactly 0 in bf16: a kernel that multiplied
    # memory it never wrote by zero would show here first (see test_bf16_padding_only_taps_...)
    for name, g32 in grads32.items():
        assert torch.isfinite(grads16[name]).all(), name
        if not g32.any():
            assert not grads16[name].any(), name
    # the gradients point the same way, model by model
    for model in ("policy", "recognizer", "mirror"):
        names = [n for n in grads32 if n.startswith(f"models.{model}.")]
        g32 = torch.cat([grads32[n].flatten() for n in names])
        g16 = torch.cat([grads16[n].float().flatten() for n in names])
        assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.95, model
    # and evaluation outside the autocast context is fp32 again, bit for bit
    module.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        a = module.compute(batch)[0]
        torch.manual_seed(0)
        b = module.compute(batch)[0]
    assert torch.equal(a, b) and a.dtype == torch.float32


def poison_heap() -> None:
    """Leave freed heap blocks of many sizes full of NaN, so the next allocations hold NaN bytes."""
    blocks = [torch.full((n,), float("nan")) for n in (256, 1024, 4096, 16384, 65536) for _ in range(4)]
    del blocks


def test_bf16_padding_only_taps_are_computed_in_fp32():
    """oneDNN 3.12's bf16 backward-weights kernel on AMX gives the kernel taps of a strided
    convolution that meet only padding a gradient from memory it never wrote (NaN after the
    heap held NaN; tools/onednn_bf16_bwd_w_repro.py). The recognizer's Conv3d computes those
    convolutions in fp32 under bf16 autocast; the others stay in bf16."""
    from embodied.recognizers.conv3d import Conv3d, strided_padding_taps

    spatial = ((1, 3, 3), (1, 2, 2), (0, 1, 1))
    assert strided_padding_taps((2, 1, 1), *spatial)  # a 1-pixel input: columns 0 and 2 meet padding
    assert not strided_padding_taps((2, 3, 3), *spatial)  # each tap meets the input somewhere
    assert not strided_padding_taps((2, 1, 1), (1, 3, 3), (1, 1, 1), (0, 1, 1))  # stride 1: fine
    assert strided_padding_taps((1, 4, 4), (3, 1, 1), (2, 1, 1), (1, 0, 0))  # one frame, strided
    autocast, _ = precision(torch.device("cpu"), "bf16")
    torch.manual_seed(0)
    conv = Conv3d(16, 16, *spatial, bias=False)
    for width in (1, 3):
        for _ in range(5):
            x = torch.relu(torch.randn(4, 16, 2, width, width)).requires_grad_()
            with autocast():
                y = conv(x)
            assert y.dtype == (torch.float32 if width == 1 else torch.bfloat16)
            conv.zero_grad()
            poison_heap()
            y.backward(torch.randn(y.shape))
            assert torch.isfinite(conv.weight.grad).all()
            if width == 1:  # the edge columns only ever met padding
                assert not conv.weight.grad[..., [0, 2]].any()
    # a recognizer whose last stage strides a 1-pixel input (16 px, depth 4) trains in bf16
    cfg = joint_config(recognizer={"name": "conv3d", "width": 8, "depth": 4, "dropout": 0.0})
    module, batch = build(cfg), make_batch()
    _, _, grads32 = loss_and_grads(module, batch)
    for _ in range(3):
        poison_heap()
        _, _, grads16 = loss_and_grads(module, batch, autocast=autocast)
        for name, g32 in grads32.items():
            assert torch.isfinite(grads16[name]).all(), name
            if not g32.any():
                assert not grads16[name].any(), name


# --------------------------------------------------------------------------- torch.compile
def test_compiled_backbones_load_the_same_checkpoint(tmp_path):
    cfg = joint_config()
    eager = build(cfg, seed=0)
    path = tmp_path / "weights.pt"
    torch.save(eager.state_dict(), path)

    compiled = build(cfg, seed=1)  # other weights until the checkpoint is loaded
    names = compiled.compile_backbones(backend="eager")  # dynamo's tracing without code generation: fast
    assert names == ["policy.encoder.encoders.corner_image.backbone", "recognizer.backbone"]
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.load_state_dict(torch.load(path, weights_only=True))

    batch = make_batch()
    loss_a, feats_a, grads_a = loss_and_grads(eager, batch)
    loss_b, feats_b, grads_b = loss_and_grads(compiled, batch)
    torch.testing.assert_close(loss_b, loss_a)
    for fa, fb in zip(feats_a, feats_b, strict=True):
        torch.testing.assert_close(fb, fa)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], msg=name)

    # evaluation runs the eager code; a compiled policy still pickles, as rollout workers need
    policy = compiled.models["policy"].eval()
    copy = pickle.loads(pickle.dumps(policy))
    obs = {k: v[:1] for k, v in batch[K.OBS].items()}
    with torch.no_grad():
        torch.testing.assert_close(copy(obs, batch[K.INSTRUCTION][:1]), policy(obs, batch[K.INSTRUCTION][:1]))


def test_a_backbone_holding_a_feature_tap_is_not_compiled():
    cfg = joint_config()
    cfg.recognizer.feature_tap = "backbone.stages.0"  # a hook inside the backbone
    module = build(cfg)
    assert module.compile_backbones(backend="eager") == ["policy.encoder.encoders.corner_image.backbone"]


# --------------------------------------------------------------------------- bit-identical rewrites
def test_foreach_adamw_and_clipping_are_bit_identical_to_the_per_tensor_loop():
    cfg = joint_config()
    loop_, batched = build(cfg), build(cfg)
    opt_a, sched_a = optimizer_of(loop_, cfg, foreach=False)
    opt_b, sched_b = optimizer_of(batched, cfg, foreach=True)
    for step in range(3):
        batch = make_batch(step)
        for module, opt, sched in ((loop_, opt_a, sched_a), (batched, opt_b, sched_b)):
            torch.manual_seed(step)
            update_step(module, batch, opt, sched, grad_clip=0.5)
    for (name, pa), (_, pb) in zip(loop_.named_parameters(), batched.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name

    grads = [torch.randn(5, 7) * 10, torch.randn(3), torch.randn(2, 3, 3, 3)]
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    norms = []
    for foreach in (False, True):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        norms.append((torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=foreach), [p.grad for p in params]))
    assert torch.equal(norms[0][0], norms[1][0])
    assert all(torch.equal(a, b) for a, b in zip(norms[0][1], norms[1][1], strict=True))


def flat_optimizer_of(module: TrainModule, cfg: TrainConfig):
    groups = param_groups(dict(module.models.items()), cfg.optim, {"mirror": cfg.mirror.lr})
    opt = make_optimizer(groups, cfg.optim)
    return opt, make_scheduler(opt, cfg.optim, 100)


def assert_same_state(a: dict, b: dict) -> None:
    """Two optimiser state dicts in torch's format hold the same groups and tensors."""
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i, entry in a["state"].items():
        assert entry.keys() == b["state"][i].keys()
        for key, value in entry.items():
            other = b["state"][i][key]
            assert torch.equal(value, other) and value.stride() == other.stride(), (i, key)


def test_flat_adamw_and_its_clipping_are_bit_identical_to_foreach_adamw():
    cfg = joint_config()
    plain, flat = build(cfg), build(cfg)
    plain.use_channels_last()  # strided parameters: each a view of the buffer with its own strides
    flat.use_channels_last()
    opt_a, sched_a = optimizer_of(plain, cfg)
    opt_b, sched_b = flat_optimizer_of(flat, cfg)
    assert isinstance(opt_b, FlatAdamW) and len(opt_b.param_groups) == len(opt_a.param_groups)
    for step in range(3):
        batch = make_batch(step)
        norms = []
        for module, opt, sched in ((plain, opt_a, sched_a), (flat, opt_b, sched_b)):
            torch.manual_seed(step)
            norms.append(update_step(module, batch, opt, sched, grad_clip=0.5)["grad_norm"])
        assert norms[0] == norms[1] and norms[0] > 0.5  # the clip acted
    for (name, pa), (_, pb) in zip(plain.named_parameters(), flat.named_parameters(), strict=True):
        assert torch.equal(pa, pb) and pa.stride() == pb.stride(), name
    assert_same_state(opt_a.state_dict(), opt_b.state_dict())


def test_flat_adamw_checkpoints_are_torch_adamw_checkpoints():
    """A resumed run continues the same whichever of the two optimisers saved or loads."""
    cfg = joint_config()
    saved = {}
    for kind in ("plain", "flat"):
        module = build(cfg)
        opt, sched = optimizer_of(module, cfg) if kind == "plain" else flat_optimizer_of(module, cfg)
        for step in range(2):
            torch.manual_seed(step)
            update_step(module, make_batch(step), opt, sched, grad_clip=0.5)
        # as written to a file: torch's optimisers hand out (and load) their live tensors
        saved[kind] = copy.deepcopy((module.state_dict(), opt.state_dict(), sched.state_dict()))
    assert_same_state(saved["plain"][1], saved["flat"][1])
    finals = {}
    for source in ("plain", "flat"):
        for kind in ("plain", "flat"):
            module = build(cfg)
            opt, sched = optimizer_of(module, cfg) if kind == "plain" else flat_optimizer_of(module, cfg)
            weights, opt_state, sched_state = copy.deepcopy(saved[source])
            module.load_state_dict(weights)
            opt.load_state_dict(opt_state)
            sched.load_state_dict(sched_state)
            for step in range(2, 4):
                torch.manual_seed(step)
                update_step(module, make_batch(step), opt, sched, grad_clip=0.5)
            finals[source, kind] = module.state_dict()
    reference = finals["plain", "plain"]
    for key, state in finals.items():
        assert all(torch.equal(state[k], reference[k]) for k in reference), key


def test_flat_adamw_leaves_a_parameter_without_gradients_alone():
    torch.manual_seed(0)
    used, unused = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    late = torch.nn.Linear(3, 2)  # its first gradient comes at the third step
    params = [*used.parameters(), *unused.parameters(), *late.parameters()]
    before = [p.detach().clone() for p in unused.parameters()]
    opt = FlatAdamW([{"params": params, "weight_decay": 0.1}], lr=0.1)
    x = torch.randn(4, 3)
    for step in range(4):
        # module.zero_grad() sets the gradients to None (outside the buffer): the step still sees them
        used.zero_grad(set_to_none=True)
        loss = used(x).sum() + (late(x).sum() if step >= 2 else 0.0)
        loss.backward()
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(unused.parameters(), before, strict=True))
    state = opt.state_dict()
    assert sorted(state["state"]) == [0, 1, 4, 5]  # torch's numbering; the unused pair has none
    assert all(not torch.equal(p, torch.nn.Linear(3, 2).weight) for p in late.parameters())
    assert opt.param_groups[0]["params"][0].numel() == sum(p.numel() for p in params)


def _crop_per_pixel(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """The random crop as it was: every pixel indexed with broadcast (N, C, ch, cw) indices."""
    n, c, h, w = images.shape
    ch, cw = max(1, round(fraction * h)), max(1, round(fraction * w))
    top = torch.randint(0, h - ch + 1, (n,))
    left = torch.randint(0, w - cw + 1, (n,))
    rows = top[:, None] + torch.arange(ch)
    cols = left[:, None] + torch.arange(cw)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(c)[None, :, None, None]
    return images[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


@pytest.mark.parametrize(
    "shape, fraction", [((5, 3, 17, 23), 0.7), ((1, 3, 8, 8), 0.5), ((4, 3, 64, 64), 0.9)]
)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_random_crop_is_the_per_pixel_crop(shape, fraction, layout):
    n, c, h, w = shape
    if layout == "contiguous":
        images = torch.randint(0, 256, shape, dtype=torch.uint8)
    else:  # as the reader's batches are: (H, W, 3) frames seen as (3, H, W)
        images = torch.randint(0, 256, (n, h, w, c), dtype=torch.uint8).permute(0, 3, 1, 2)
    torch.manual_seed(3)
    expected = _crop_per_pixel(images, fraction)
    torch.manual_seed(3)
    got = crop(images, fraction, random=True)
    after = torch.get_rng_state()
    # the same values, and contiguous as before: the convolutions after it take the same path
    assert torch.equal(got, expected) and got.is_contiguous() and expected.is_contiguous()
    torch.manual_seed(3)
    _crop_per_pixel(images, fraction)
    assert torch.equal(after, torch.get_rng_state())  # the same random draws, so the same runs


# --------------------------------------------------------------------------- config
def test_speed_settings_default_off_and_free_on_resume():
    cfg = joint_config()
    assert (cfg.precision, cfg.channels_last, cfg.compile, cfg.threads) == ("auto", False, False, 0)
    assert {"channels_last", "compile", "threads"} <= set(RESUME_FREE_KEYS)
    assert "precision" not in RESUME_FREE_KEYS  # bf16 and fp32 steps are different training
    with pytest.raises(UserError, match=r"threads must be in \[0, 1024\]"):
        joint_config(threads=-1)
    with pytest.raises(UserError, match="precision"):
        joint_config(precision="fp16")


def test_a_run_sets_its_threads_and_gives_them_back(tiny_run):
    torch.set_num_threads(2)
    try:
        out = tiny_run(
            "policy_quick",
            "policy.obs_keys=[robot_state,corner_image]",
            "policy.image_channels=8",
            "threads=1",
            "channels_last=true",
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert (out / "checkpoints" / "last.pt").is_file()
