"""Behaviour-cloning policies (E): one contract, one registry keyed by the config's ``name``.

    from embodied.policies import PolicyConfig, build_policy
    policy = build_policy(BCRNNConfig(head=GMMHeadConfig()), spec)

Policies: bc_mlp, bc_rnn, bc_transformer (trunks that take any head: deterministic, gmm, chunk,
diffusion), diffusion (Diffusion Policy: the To-step window and the diffusion head) and act
(ACT: a CVAE transformer encoder-decoder with the chunk head's execution).

The settings of every policy and head (no torch) are in :mod:`.config` and imported here; the
models (torch) on first use of one of their names, all at once, so that every builder is
registered before one is built.
"""

from embodied.policies.config import (
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
    HeadConfig,
    PolicyConfig,
)

_TORCH = ("ACT", "BCMLP", "BCRNN", "BCTransformer", "DiffusionPolicy", "Policy", "build_policy")
"""The names that need torch."""


def __getattr__(name: str):
    if name not in _TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from embodied.policies import act, base, bc_mlp, bc_rnn, bc_transformer, diffusion

    for module in (act, base, bc_mlp, bc_rnn, bc_transformer, diffusion):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)  # not reached: every name of _TORCH is in one of them


__all__ = [
    "ACT",
    "BCMLP",
    "BCRNN",
    "HEADS",
    "POLICIES",
    "BCMLPConfig",
    "BCRNNConfig",
    "BCTransformer",
    "BCTransformerConfig",
    "ACTConfig",
    "ChunkHeadConfig",
    "DeterministicHeadConfig",
    "DiffusionConfig",
    "DiffusionHeadConfig",
    "DiffusionPolicy",
    "GMMHeadConfig",
    "HeadConfig",
    "Policy",
    "PolicyConfig",
    "build_policy",
]
