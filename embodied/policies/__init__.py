"""Behaviour-cloning policies (E): one contract, one registry keyed by the config's ``name``.

    from embodied.policies import PolicyConfig, build_policy
    policy = build_policy(BCRNNConfig(head=GMMHeadConfig()), spec)

Policies: bc_mlp, bc_rnn, bc_transformer (trunks that take any head: deterministic, gmm, chunk,
diffusion), diffusion (Diffusion Policy: the To-step window and the diffusion head) and act
(ACT: a CVAE transformer encoder-decoder with the chunk head's execution).

Importing this package registers every policy and head.
"""

from embodied.policies.act import ACT, ACTConfig
from embodied.policies.base import POLICIES, Policy, PolicyConfig, build_policy
from embodied.policies.bc_mlp import BCMLP, BCMLPConfig
from embodied.policies.bc_rnn import BCRNN, BCRNNConfig
from embodied.policies.bc_transformer import BCTransformer, BCTransformerConfig
from embodied.policies.diffusion import DiffusionConfig, DiffusionHeadConfig, DiffusionPolicy
from embodied.policies.heads import (
    HEADS,
    ChunkHeadConfig,
    DeterministicHeadConfig,
    GMMHeadConfig,
    HeadConfig,
)

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
