"""What a run is built from: the resolved config, the train and valid splits, the models."""

from __future__ import annotations

import dataclasses
import json
import sys

from torch import nn

from embodied.data.reader import DemoDataset
from embodied.errors import UserError
from embodied.mirror import (
    MirrorHead,
)
from embodied.models.common import DataSpec
from embodied.train import checkpoint as ckpt
from embodied.train.config import TrainConfig


# --------------------------------------------------------------------------- set-up
def resolve(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, dict]]:
    """The config with data settings made explicit, and the probed models' checkpoint entries.

    Probe mode reads windows and clips as the probed models were trained on them: To and Ta
    from the policy's data, the clip length, stride and camera from the recognizer's.
    """
    sources: dict[str, dict] = {}
    data = cfg.data
    if cfg.mode == "probe":
        for name, path in (("policy", cfg.probe.policy_ckpt), ("recognizer", cfg.probe.recognizer_ckpt)):
            payload = ckpt.read_checkpoint(path)
            entry = ckpt.source_entry(payload, path, name)
            sources[name] = entry | {"run": ckpt.checkpoint_config(payload, path)}
        pspec = DataSpec.from_json(json.loads(sources["policy"]["spec"]))
        rspec = DataSpec.from_json(json.loads(sources["recognizer"]["spec"]))
        rdata = sources["recognizer"]["run"].data
        data = dataclasses.replace(
            data,
            obs_keys=list(json.loads(sources["policy"]["config"])["obs_keys"]),
            obs_horizon=pspec.obs_horizon,
            action_horizon=pspec.action_horizon,
            clip_len=rspec.clip_len,
            clip_stride=rdata.clip_stride,
            camera=rdata.camera,
        )
    elif data.obs_keys is None:
        # a policy's keys; None (a policy that reads every low-dim stream): the reader's default
        keys = cfg.policy.obs_keys if cfg.policy else []
        data = dataclasses.replace(data, obs_keys=None if keys is None else list(keys))
    return dataclasses.replace(cfg, data=data), sources


def build_datasets(cfg: TrainConfig, vocab: DataSpec | None) -> tuple[DemoDataset, DemoDataset | None]:
    """The train split, and the valid split when validation is on (same tasks and instructions)."""
    d = cfg.data
    common = dict(
        mode=cfg.data_mode,
        obs_keys=d.obs_keys,
        obs_horizon=d.obs_horizon,
        action_horizon=d.action_horizon,
        clip_len=d.clip_len,
        clip_stride=d.clip_stride,
        camera=d.camera,
        image_cache_bytes=d.image_cache_bytes,
    )
    train_ds = DemoDataset(
        d.paths,
        split="train",
        training=True,
        max_demos=d.max_demos,
        classes=vocab.classes if vocab else None,
        instructions=vocab.instructions if vocab else None,
        **common,
    )
    if cfg.mode in ("recognizer", "joint") and len(train_ds.classes) == 1:
        print(
            f"warning: the data hold one class ({train_ds.classes[0]}): the recognizer and the mirror head "
            "have nothing to tell apart (chance is 1.0). A demo's task comes from its task attribute, "
            "else its file's env_args.env_name, else the file name",
            file=sys.stderr,
        )
    if not cfg.val_every:
        return train_ds, None
    common["camera"] = train_ds.camera
    try:
        valid_ds = DemoDataset(
            d.paths,
            split="valid",
            training=False,
            classes=train_ds.classes,
            instructions=train_ds.instructions,
            **common,
        )
    except UserError as err:
        raise UserError(f"{err} (validation needs the valid split; val_every=0 trains without)") from None
    return train_ds, valid_ds


def build_models(cfg: TrainConfig, spec: DataSpec, stats: dict, sources: dict[str, dict]):
    """{name: model} and {name: (config, spec)} each model is saved with."""
    models: dict[str, nn.Module] = {}
    made_with: dict[str, tuple] = {}
    if cfg.mode == "probe":
        for name, entry in sources.items():
            pretrained = cfg.probe.init == "checkpoint"
            model, mcfg, mspec = ckpt.rebuild(name, entry, weights=pretrained)
            if name == "policy":
                ckpt.check_spec(
                    mspec,
                    spec,
                    f"the probed policy ({cfg.probe.policy_ckpt})",
                    keys=mcfg.obs_keys,
                    fields=("action_dim", "obs_horizon", "action_horizon"),
                )
                if not pretrained:
                    model.fit_normalization(stats)
            model.requires_grad_(False)
            models[name], made_with[name] = model, (mcfg, mspec)
    else:
        if cfg.policy is not None:
            models["policy"] = ckpt.build_model("policy", cfg.policy, spec)
            models["policy"].fit_normalization(stats)
            made_with["policy"] = (cfg.policy, spec)
        if cfg.recognizer is not None:
            models["recognizer"] = ckpt.build_model("recognizer", cfg.recognizer, spec)
            made_with["recognizer"] = (cfg.recognizer, spec)
    if cfg.mirror is not None:
        dims = [models["recognizer"].feature_dim, models["policy"].feature_dim]
        models["mirror"] = MirrorHead(cfg.mirror, *dims)
        made_with["mirror"] = (cfg.mirror, spec)
    return models, made_with
