"""Recognizers (U): the contract, parametrised over every registered model, on tiny inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from embodied import keys
from embodied.config import field_docs, from_dict
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.recognizers import (
    RECOGNIZERS,
    Conv3DConfig,
    RecognizerConfig,
    VideoTransformerConfig,
    build_recognizer,
    classify_video,
)
from embodied.recognizers.augment import color_jitter, crop_and_resize
from embodied.recognizers.inference import sample_clip_indices

NAMES = sorted(RECOGNIZERS.configs)
B, T, S, C, NI = 4, 4, 32, 3, 5
SPEC = DataSpec(num_classes=C, num_instructions=NI, clip_len=T, image_size=S)

# Small enough that the whole file runs in seconds on a shared 2-core CPU. A model registered
# later without an entry here is tested at its defaults (slower, still correct).
TINY = {
    "conv3d": {"width": 4, "depth": 2, "blocks": 1},
    "video_transformer": {"width": 16, "depth": 1, "heads": 2, "patch_size": 8, "tubelet_frames": 2},
}


def make(name: str, **overrides):
    torch.manual_seed(0)
    config = from_dict(RecognizerConfig, {"name": name, **TINY.get(name, {}), **overrides})
    return build_recognizer(config, SPEC)


def make_batch(seed: int = 0, t: int = T, size: int = S) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        keys.VIDEO: torch.randint(0, 256, (B, t, 3, size, size), dtype=torch.uint8, generator=g),
        keys.LABEL: torch.tensor([0, 1, 2, 0]),
        keys.INSTRUCTION: torch.tensor([0, 1, 2, 3]),
    }


def test_registry_holds_both_models():
    assert {"conv3d", "video_transformer"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_and_loss_metrics(name):
    model = make(name)
    out = model(make_batch()[keys.VIDEO])
    assert out["class_logits"].shape == (B, C)
    assert out["instruction_logits"].shape == (B, NI)
    loss, metrics = model.loss(make_batch())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(metrics) == {"loss", "class_loss", "class_acc", "instruction_loss", "instruction_acc"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert 0.0 <= metrics["class_acc"] <= 1.0
    w = model.config.instruction_loss_weight
    assert metrics["loss"] == pytest.approx(metrics["class_loss"] + w * metrics["instruction_loss"], rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_optimisation_lowers_loss_on_a_fixed_batch(name):
    model = make(name, dropout=0.0, crop_fraction=1.0, color_jitter=0.0)
    batch = make_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_logits_and_features(name, tmp_path):
    model = make(name, feature_tap="")
    loss, _ = model.loss(make_batch())  # one training step, so batch-norm statistics move off init
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    video = make_batch(seed=1)[keys.VIDEO]
    with torch.no_grad():
        expected = model(video, with_features=True)
    torch.save(model.state_dict(), tmp_path / "u.pt")

    torch.manual_seed(123)  # a differently initialised twin: loading must be what makes them agree
    twin = build_recognizer(model.config, SPEC).eval()
    with torch.no_grad():
        assert not torch.equal(twin(video)["class_logits"], expected["class_logits"])
        twin.load_state_dict(torch.load(tmp_path / "u.pt", weights_only=True))
        got = twin(video, with_features=True)
    for key in ("class_logits", "instruction_logits", "features"):
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_features_shape_and_gradient(name):
    model = make(name)
    video = make_batch()[keys.VIDEO]
    feats = model.features(video)
    assert feats.shape == (B, model.feature_dim)
    assert model.feature_dim == model.embed_dim  # the default tap is the embedding before the heads
    feats.pow(2).sum().backward()  # alignment trains the recognizer through its features
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_forward_with_features_matches_separate_calls(name):
    model = make(name).eval()
    video = make_batch()[keys.VIDEO]
    with torch.no_grad():
        out = model(video, with_features=True)
        torch.testing.assert_close(out["features"], model.features(video))
        torch.testing.assert_close(out["class_logits"], model.predict(video))


@pytest.mark.parametrize("name", NAMES)
def test_every_named_layer_can_be_tapped(name):
    layers = [n for n, _ in make(name).named_modules() if n.startswith("backbone.")]
    assert len(layers) > 3
    video = make_batch()[keys.VIDEO]
    default = make(name).eval()
    with torch.no_grad():
        default_feats = default.features(video)
    differs = []
    for layer in layers:
        model = make(name, feature_tap=layer).eval()
        with torch.no_grad():
            feats = model.features(video)
        assert feats.shape == (B, model.feature_dim), layer
        assert torch.isfinite(feats).all(), layer
        differs.append(feats.shape != default_feats.shape or not torch.allclose(feats, default_feats))
    # the first layer is far from the embedding; only the layers that end the network
    # (the last stage, a final norm) may pool to the same vector as the default tap
    assert differs[0] and sum(differs) >= len(layers) / 2


@pytest.mark.parametrize("name", NAMES)
def test_unknown_feature_tap_is_a_user_error(name):
    with pytest.raises(UserError, match="backbone"):
        make(name, feature_tap="no.such.layer")


@pytest.mark.parametrize("name", NAMES)
def test_augmentation_only_in_training(name):
    model = make(name, crop_fraction=0.7, color_jitter=0.3, dropout=0.5)
    video = make_batch()[keys.VIDEO]
    model.eval()
    with torch.no_grad():
        a, b = model(video)["class_logits"], model(video)["class_logits"]
        assert torch.equal(a, b)
        assert torch.equal(model.prepare(video), model.prepare(video))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model.prepare(video), model.prepare(video))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [1, 3, 7])
def test_other_clip_lengths_and_frame_sizes(name, t):
    model = make(name).eval()
    with torch.no_grad():
        out = model(make_batch(t=t, size=40)[keys.VIDEO], with_features=True)
    assert out["class_logits"].shape == (B, C)
    assert out["features"].shape == (B, model.feature_dim)
    assert torch.isfinite(out["class_logits"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_video_must_be_uint8(name):
    model = make(name)
    with pytest.raises(ValueError, match="uint8"):
        model(make_batch()[keys.VIDEO].float())


@pytest.mark.parametrize("name", NAMES)
def test_instruction_loss_weight(name):
    batch = make_batch()
    model = make(name, instruction_loss_weight=0.0)
    no_instruction = {k: v for k, v in batch.items() if k != keys.INSTRUCTION}
    loss, metrics = model.loss(no_instruction)
    assert "instruction_acc" not in metrics
    assert metrics["loss"] == pytest.approx(metrics["class_loss"])
    with pytest.raises(KeyError, match=keys.INSTRUCTION):
        make(name, instruction_loss_weight=1.0).loss(no_instruction)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_frames", [2, 40])
def test_classify_video_returns_a_probability_vector(name, num_frames):
    model = make(name)
    model.train()
    frames = np.random.default_rng(0).integers(0, 256, (num_frames, 48, 40, 3), dtype=np.uint8)
    probs, top = classify_video(model, frames, clip_len=T, stride=2, num_clips=3)
    assert probs.shape == (C,)
    assert (probs >= 0).all() and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert top == int(probs.argmax())
    assert model.training  # the model's mode is given back


def test_classify_video_averages_clip_probabilities():
    model = make("conv3d").eval()
    frames = np.random.default_rng(1).integers(0, 256, (10, S, S, 3), dtype=np.uint8)
    probs, _ = classify_video(model, frames, clip_len=T, stride=1, num_clips=2)
    clips = torch.from_numpy(frames[sample_clip_indices(10, T, 1, 2)]).permute(
        0, 1, 4, 2, 3
    )  # (2, T, 3, S, S)
    expected = model.predict(clips).softmax(-1).mean(0).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_classify_video_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        classify_video(make("conv3d"), np.zeros((5, S, S, 3), np.float32), clip_len=T)


def test_sample_clip_indices():
    idx = sample_clip_indices(num_frames=20, clip_len=4, stride=3, num_clips=3)
    assert idx.shape == (3, 4)
    assert idx[0, 0] == 0 and idx[-1, -1] == 19  # the clips cover the video end to end
    assert (np.diff(idx, axis=1) == 3).all()
    short = sample_clip_indices(num_frames=3, clip_len=4, stride=2, num_clips=2)
    np.testing.assert_array_equal(short, [[0, 2, 2, 2], [0, 2, 2, 2]])  # last frame repeated
    with pytest.raises(ValueError):
        sample_clip_indices(0, 4, 1, 1)


def test_crop_and_resize():
    x = torch.rand(2, 3, 3, 8, 8)
    assert torch.equal(crop_and_resize(x, 8, 1.0, random=True), x)
    # a half-size centre crop of a 8 px frame resampled to 4 px is exactly its centre 4 x 4
    torch.testing.assert_close(crop_and_resize(x, 4, 0.5, random=False), x[..., 2:6, 2:6])
    torch.manual_seed(0)
    crops = crop_and_resize(x, 4, 0.5, random=True)
    assert crops.shape == (2, 3, 3, 4, 4)
    # one crop per clip, shared by its frames: the temporal difference is preserved where it is 0
    still = x[:, :1].expand(-1, 3, -1, -1, -1)
    still_crops = crop_and_resize(still, 4, 0.5, random=True)
    assert torch.equal(still_crops[:, 0], still_crops[:, 2])


def test_color_jitter_stays_in_range_and_is_per_clip():
    x = torch.rand(3, 4, 3, 8, 8)
    y = color_jitter(x, 0.5)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.equal(x, y)
    assert torch.equal(color_jitter(x, 0.0), x)


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "conv3d", "dropout": 1.0},
        {"name": "conv3d", "crop_fraction": 0.0},
        {"name": "conv3d", "crop_fraction": 1.5},
        {"name": "conv3d", "color_jitter": -0.1},
        {"name": "conv3d", "instruction_loss_weight": -1.0},
        {"name": "conv3d", "width": 0},
        {"name": "conv3d", "kernel_size": 4},
        {"name": "video_transformer", "width": 30, "heads": 4},
        {"name": "video_transformer", "patch_size": 0},
        {"name": "video_transformer", "mlp_ratio": 0.0},
    ],
)
def test_config_validation(raw):
    cls = RECOGNIZERS.config_class(raw["name"])
    with pytest.raises(ValueError):
        cls(**raw)
    with pytest.raises(UserError):  # the loader turns it into one line for the user
        from_dict(RecognizerConfig, raw)


def test_config_loading_errors_name_the_problem():
    with pytest.raises(UserError, match="video_transformer"):
        from_dict(RecognizerConfig, {"name": "no_such_model"})
    with pytest.raises(UserError, match="heads"):  # a key of the other model is unknown here
        from_dict(RecognizerConfig, {"name": "conv3d", "heads": 4})
    assert isinstance(from_dict(RecognizerConfig, {"name": "conv3d"}), Conv3DConfig)
    assert isinstance(from_dict(RecognizerConfig, {"name": "video_transformer"}), VideoTransformerConfig)


def test_base_config_is_completed_with_model_defaults():
    model = build_recognizer(RecognizerConfig(name="conv3d", dropout=0.2), SPEC)
    assert isinstance(model.config, Conv3DConfig) and model.config.dropout == 0.2


@pytest.mark.parametrize("name", NAMES)
def test_every_config_field_is_documented(name):
    cls = RECOGNIZERS.config_class(name)
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing


def test_transformer_rounds_frame_side_to_whole_patches():
    spec = dataclasses.replace(SPEC, image_size=84)
    model = build_recognizer(VideoTransformerConfig(**TINY["video_transformer"]), spec).eval()
    assert model.input_size == 80
    with torch.no_grad():
        out = model(torch.zeros(2, T, 3, 84, 84, dtype=torch.uint8))
    assert out["class_logits"].shape == (2, C)
