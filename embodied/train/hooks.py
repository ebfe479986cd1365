"""What the training loop does between steps, as hooks: each says when it is due and acts on the
:class:`~embodied.train.setup.Run` and its :class:`~embodied.train.setup.TrainState`.

- :class:`Checkpoints`: last.pt every ``ckpt_every`` steps and at the end (everything an exact
  resume needs), best.pt on a new lowest validation loss (models only);
- :class:`Validation`: the losses and alignment metrics on a fixed subset of the valid split
  every ``val_every`` steps and at the end (with the EMA weights when on);
- :class:`Rollouts`: the policy in the simulator every ``rollout_every`` steps and at the end.

Validation and rollouts draw their random numbers from forked generators, so they never change
training; rank 0 alone runs them and writes checkpoints.
"""

from __future__ import annotations

import contextlib

from embodied.eval.plan import check_observations, suite_of
from embodied.eval.settings import Videos
from embodied.train import checkpoint as ckpt
from embodied.train.models import model_entry
from embodied.train.rollouts import rollout_metrics
from embodied.train.runlog import RunLog
from embodied.train.setup import Run
from embodied.train.validation import gallery_indices, validate, validation_indices


def _averaged(run: Run):
    """The EMA weights in the models while in this context, when EMA is on."""
    return run.ema.applied() if run.ema else contextlib.nullcontext()


def _every(step: int, every: int, final: bool) -> bool:
    return final or (every > 0 and step % every == 0)


class Checkpoints:
    def __init__(self, run: Run) -> None:
        self.run = run

    def due(self, step: int, final: bool) -> bool:
        return _every(step, self.run.cfg.ckpt_every, final)

    def save(self, kind: str, rngs: list[dict] | None = None) -> None:
        """last.pt (everything to resume; ``rngs``: every process's random state) or best.pt
        (models only); rank 0 writes, the others return."""
        run = self.run
        if not run.procs.is_main:
            return
        with _averaged(run):
            entries = {name: model_entry(name, m, *run.made_with[name]) for name, m in run.models.items()}
        payload = ckpt.run_payload(run.cfg, run.spec, run.stats, entries)
        if kind == "last":
            payload["train"] = ckpt.training_state(
                step=run.state.step,
                sampler=run.sampler,
                num_samples=len(run.train_ds),
                world_size=run.procs.world_size,
                optimizer=run.optimizer,
                scheduler=run.scheduler,
                scaler=run.scaler,
                ema=run.ema,
                module=run.module,
                best=run.state.best,
                last=run.state.last,
                rngs=rngs,
                wall_s=run.state.wall_s,
            )
        ckpt.save_checkpoint(run.out / "checkpoints" / f"{kind}.pt", payload)


class Validation:
    """Due every ``val_every`` steps and at the end, when the run has a valid split."""

    def __init__(self, run: Run, log: RunLog, checkpoints: Checkpoints) -> None:
        self.run, self.log, self.checkpoints = run, log, checkpoints
        valid = run.valid_ds
        self.indices = validation_indices(valid, run.cfg) if valid is not None else None
        self.gallery = gallery_indices(valid) if valid is not None and run.cfg.mirror is not None else None

    def due(self, step: int, final: bool) -> bool:
        return self.run.valid_ds is not None and _every(step, self.run.cfg.val_every, final)

    def __call__(self, final: bool) -> None:
        run, state = self.run, self.run.state
        # the last validation draws the shared space of a run with a mirror head
        tsne = run.out / "tsne.png" if final and run.cfg.mirror is not None else None
        with _averaged(run):
            metrics = validate(
                run.module,
                run.valid_ds,
                self.indices,
                run.cfg.data.batch_size,
                run.procs.device,
                run.autocast,
                tsne,
                run.spec,
                gallery=self.gallery,
            )
        state.last["val"] = metrics
        self.log.event("val", state.step, metrics)
        if metrics.get("loss", float("inf")) < state.best["loss"]:
            state.best.update(loss=metrics["loss"], step=state.step)
            self.checkpoints.save("best")


class Rollouts:
    """Due every ``rollout_every`` steps and at the end (never with ``rollout_every=0``)."""

    def __init__(self, run: Run, log: RunLog, evaluator) -> None:
        self.run, self.log, self.evaluator = run, log, evaluator
        if run.cfg.rollout_every and evaluator is None and "policy" in run.models:
            # a policy the simulator cannot feed: said now, not at the first rollout hours later
            check_observations(run.spec, suite_of(run.spec.task_names))

    def due(self, step: int, final: bool) -> bool:
        return bool(self.run.cfg.rollout_every) and _every(step, self.run.cfg.rollout_every, final)

    def __call__(self, final: bool) -> None:
        run = self.run
        videos = None
        if run.cfg.rollout_videos:  # GIFs, which TensorBoard plays (RunLog.videos)
            folder = run.out / "videos" / f"step_{run.state.step}"
            videos = Videos(episodes=run.cfg.rollout_videos, folder=folder, gif=True, size=0)
        with _averaged(run):  # rollout_metrics puts the policy in eval mode and forks the random state
            metrics = rollout_metrics(
                self.evaluator, run.models["policy"], run.spec, run.cfg.rollout_episodes, videos
            )
        run.state.last["rollout"] = metrics
        self.log.event("rollout", run.state.step, metrics)
        if videos is not None and videos.folder.is_dir():
            self.log.videos("rollout", run.state.step, sorted(videos.folder.glob("*.gif")))
