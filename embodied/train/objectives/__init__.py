"""The registered training objectives, one module each (see :mod:`embodied.train.objective`).

- :mod:`.policy`: the policy E alone, on execution windows;
- :mod:`.recognizer`: the recognizer U alone, on observation clips;
- :mod:`.joint`: both and the mirror head, on paired batches,
  ``L = L_AU + mirror.lambda_ee * L_EE + mirror.weight * L_align`` (paper: 1 and 0.5);
- :mod:`.probe`: both loaded frozen from checkpoints (or their architectures randomly
  initialised, the control); only the mirror head's T_u, T_e train (the paper's "spontaneous
  alignment");
- the controls of the mirror comparison: :mod:`.aux_ce` (E's tap with a linear instruction
  classifier), :mod:`.label_partner` (E aligned through the mirror head to a learned embedding of
  the instruction id), :mod:`.frozen_u` (E aligned to a recognizer trained before, frozen) and
  :mod:`.joint_selfsup` (the joint run with U learning only through the alignment).

Importing this package registers them; :mod:`embodied.train` imports it, so every objective is
known wherever a training config is read.
"""

from embodied.train.objectives import (
    aux_ce,
    frozen_u,
    joint,
    joint_selfsup,
    label_partner,
    policy,
    probe,
    recognizer,
)

__all__ = ["aux_ce", "frozen_u", "joint", "joint_selfsup", "label_partner", "policy", "probe", "recognizer"]
