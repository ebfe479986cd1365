"""The registered training objectives, one module each (see :mod:`embodied.train.objective`).

- :mod:`.policy`: the policy E alone, on execution windows;
- :mod:`.recognizer`: the recognizer U alone, on observation clips;
- :mod:`.joint`: both and the mirror head, on paired batches,
  ``L = L_AU + mirror.lambda_ee * L_EE + mirror.weight * L_align`` (paper: 1 and 0.5);
- :mod:`.probe`: both loaded frozen from checkpoints (or their architectures randomly
  initialised, the control); only the mirror head's T_u, T_e train (the paper's "spontaneous
  alignment");
- :mod:`.aux_ce`: a control of the mirror comparison: E's tap with a linear instruction
  classifier and cross-entropy, weighted as the alignment is, no recognizer.

Importing this package registers them; :mod:`embodied.train` imports it, so every objective is
known wherever a training config is read.
"""

from embodied.train.objectives import aux_ce, joint, policy, probe, recognizer

__all__ = ["aux_ce", "joint", "policy", "probe", "recognizer"]
