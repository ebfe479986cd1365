"""Behaviour-cloning policies (E): one contract, one registry keyed by the config's ``name``.

    from embodied.policies import PolicyConfig, build_policy
    policy = build_policy(BCRNNConfig(head=GMMHeadConfig()), spec)

Importing this package registers every policy and head.
"""

from embodied.policies.base import POLICIES, Policy, PolicyConfig, build_policy
from embodied.policies.bc_mlp import BCMLP, BCMLPConfig
from embodied.policies.bc_rnn import BCRNN, BCRNNConfig
from embodied.policies.bc_transformer import BCTransformer, BCTransformerConfig
from embodied.policies.heads import (
    HEADS,
    ChunkHeadConfig,
    DeterministicHeadConfig,
    GMMHeadConfig,
    HeadConfig,
)

__all__ = [
    "BCMLP",
    "BCRNN",
    "HEADS",
    "POLICIES",
    "BCMLPConfig",
    "BCRNNConfig",
    "BCTransformer",
    "BCTransformerConfig",
    "ChunkHeadConfig",
    "DeterministicHeadConfig",
    "GMMHeadConfig",
    "HeadConfig",
    "Policy",
    "PolicyConfig",
    "build_policy",
]
