"""Step-by-step execution state of a policy: observation history and action queue.

A policy sees one observation per ``predict_action`` call but is trained on windows, so it
keeps the last To observations; a chunking head predicts K actions at once, so the policy
either executes the first n of them before predicting again (:class:`ActionQueue`) or predicts
every step and averages the overlapping predictions (:class:`TemporalEnsembler`).
"""

from __future__ import annotations

from collections import deque

import torch


class ObsHistory:
    """The last ``steps`` observations of each key, stacked along a time axis."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.frames: dict[str, deque[torch.Tensor]] = {}

    def reset(self) -> None:
        self.frames = {}

    def push(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """obs[key] (B, ...) for one step -> window[key] (B, steps, ...), oldest first."""
        for key, x in obs.items():
            if key not in self.frames:
                # The first step after reset has no past: repeat it, as robomimic and LeRobot pad
                # the start of an episode in their datasets.
                self.frames[key] = deque([x] * self.steps, maxlen=self.steps)
            else:
                self.frames[key].append(x)
        return {key: torch.stack(list(q), dim=1) for key, q in self.frames.items()}  # (B, steps, ...)


class ActionQueue:
    """Execute the first ``n`` actions of each predicted chunk, then ask for a new chunk."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.queue: deque[torch.Tensor] = deque()

    def reset(self) -> None:
        self.queue.clear()

    def __len__(self) -> int:
        return len(self.queue)

    def push(self, chunk: torch.Tensor) -> None:
        """chunk (B, K, A), K >= n."""
        self.queue.extend(chunk[:, : self.n].unbind(dim=1))  # n x (B, A)

    def pop(self) -> torch.Tensor:
        return self.queue.popleft()  # (B, A)


class TemporalEnsembler:
    """ACT's temporal ensembling (Zhao et al. 2023, arXiv:2304.13705, section 3.3).

    A chunk is predicted at every step; the chunk predicted j steps ago holds a prediction for
    the current step at index j. All of them (at most K) are averaged with weights
    w_i = exp(-m * i), i = 0 the oldest, as in ACT's code and LeRobot's ``ACTTemporalEnsembler``.
    With m > 0 older predictions weigh more, which smooths the motion.
    """

    def __init__(self, coeff: float, horizon: int) -> None:
        self.coeff = coeff
        # A chunk older than K steps has no prediction left for the current step.
        self.chunks: deque[torch.Tensor] = deque(maxlen=horizon)

    def reset(self) -> None:
        self.chunks.clear()

    def update(self, chunk: torch.Tensor) -> torch.Tensor:
        """chunk (B, K, A) predicted now -> the ensembled action (B, A) for now."""
        self.chunks.append(chunk)
        n = len(self.chunks)
        # chunks[i] (oldest first) was predicted n-1-i steps ago, so its entry for now is n-1-i.
        preds = torch.stack([c[:, n - 1 - i] for i, c in enumerate(self.chunks)], dim=1)  # (B, n, A)
        weights = torch.exp(-self.coeff * torch.arange(n, dtype=preds.dtype, device=preds.device))  # (n,)
        weights = weights / weights.sum()
        return (preds * weights[None, :, None]).sum(dim=1)  # (B, n, A) -> (B, A)
