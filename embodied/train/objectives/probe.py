"""``probe``: the paper's "spontaneous alignment". The policy and the recognizer are loaded frozen
from checkpoints (``probe.*_ckpt``), or, with ``probe.init=random``, their architectures are
randomly initialised (the control); only the mirror head's T_u, T_e train, and the alignment is
read as Recall@k on the validation pairs."""

from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn

from embodied import keys as K
from embodied.data.spec import DataSpec
from embodied.train import checkpoint as ckpt
from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import as_trained, frozen_model, mirror_head, read_sources
from embodied.train.sampling import SeededReads, fixed_subset

CALIBRATION_BATCHES = 8
"""Train batches a random control's batch-norm statistics are estimated from."""


def random_control(model: nn.Module, features, train_ds, batch_size: int, seed: int) -> None:
    """Make a randomly initialised ``model`` a fair control of a trained one: non-degenerate
    features. ``features(batch)`` runs it on a train batch.

    Two training devices leave a freshly initialised network's features nearly constant across
    inputs, and the probe's control then measured ties (its InfoNCE loss stayed at ln B): the
    residual branches start at zero (batch-norm scales of 0, Goyal et al. 2017), so a stride-2
    shortcut that reads one position decides the recognizer's output; and batch norm in eval
    mode uses statistics of (0, 1), not the data's. Here the zero scales take the standard init
    of 1 and the batch-norm statistics are estimated from ``CALIBRATION_BATCHES`` train batches
    (a cumulative average, no gradients), as a trained model's are. The draws come from a
    forked generator, so nothing else about the run changes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        if m.affine and not m.weight.detach().any():
            nn.init.ones_(m.weight)
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    count = min(CALIBRATION_BATCHES * batch_size, len(train_ds))
    indices = fixed_subset(len(train_ds), count, seed).tolist()
    model.eval()  # no augmentation, no dropout: only batch norm learns its statistics
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for m in norms:
            m.train()
        for lo in range(0, count, batch_size):
            features(SeededReads(train_ds).__getitems__((seed, indices[lo : lo + batch_size])))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


@register
class ProbeObjective(Objective):
    name = "probe"
    summary = "frozen E and U from checkpoints (or random init); only the mirror head's maps train"
    sections = ("mirror", "probe")
    data = "paired"
    trains = frozenset({"mirror"})
    frozen = frozenset({"policy", "recognizer"})
    provides = frozenset({"policy", "recognizer"})
    contrastive = True

    def resolve(self, cfg):
        """Windows and clips as the probed models were trained on them."""
        sources = read_sources(cfg, ("policy", "recognizer"))
        return dataclasses.replace(cfg, data=as_trained(cfg.data, sources)), sources

    def vocabulary(self, sources):
        return DataSpec.from_json(json.loads(sources["policy"]["spec"]))

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        pretrained = cfg.probe.init == "checkpoint"
        for name, entry in sources.items():
            model = frozen_model(name, entry, pretrained, models, made_with)
            if name == "policy":
                mcfg, mspec = made_with[name]
                ckpt.check_spec(
                    mspec,
                    spec,
                    f"the probed policy ({cfg.probe.policy_ckpt})",
                    keys=mcfg.obs_keys,
                    fields=("action_dim", "obs_horizon", "action_horizon"),
                )
                if not pretrained:
                    model.fit_normalization(stats)
        dims = (models["recognizer"].feature_dim, models["policy"].feature_dim)
        mirror_head(cfg, spec, *dims, models, made_with)
        return models, made_with

    def prepare(self, cfg, models, train_ds):
        if cfg.probe.init == "random":
            policy, recognizer = models["policy"], models["recognizer"]
            for model, features in (
                (policy, policy.features),
                (recognizer, lambda b: recognizer.features(b[K.VIDEO])),
            ):
                random_control(model, features, train_ds, cfg.data.batch_size, cfg.seed)

    def loss(self, models, batch):
        with torch.no_grad():
            f_u = models["recognizer"].features(batch[K.VIDEO])  # (B, D_u)
            f_e = models["policy"].features(batch)  # (B, D_e)
        loss, part = models["mirror"](
            f_u.float(), f_e.float(), batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL]
        )
        return loss, prefixed("mirror", part), (f_u.detach(), f_e.detach())
