"""The benchmark's typed config: one YAML preset in ``configs/bench/`` per scale.

    cfg = load_preset("quick", ["seeds=5", "eval.episodes=20"])

A preset names the demonstrations (and the recipe that makes them when they are missing),
the training config of each method with its overrides, the overrides every compared method
shares (so that they train alike), the training seeds and the evaluation settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from embodied.config import load_config, load_yaml
from embodied.errors import UserError
from embodied.eval.settings import EvalSettings
from embodied.limits import MAX_BENCH_SEEDS
from embodied.paths import resolve_resource
from embodied.seeds import EVAL_SEED_START

METHODS = ("policy", "recognizer", "joint", "probe", "probe_random")
"""The runs of one seed, in the order they train: the policy alone, the recognizer alone, both
with the mirror head (the paper's method), and the probe of the first two (frozen) against the
same architectures randomly initialised."""

METHOD_OBJECTIVES = {
    "policy": "policy",
    "recognizer": "recognizer",
    "joint": "joint",
    "probe": "probe",
    "probe_random": "probe",
}
"""The training objective (``mode``) each method's config must have."""

COMPARED_METHODS = ("policy", "recognizer", "joint")
"""The methods compared with each other: they train alike (``shared`` applies to them)."""

PROBES = {"probe": "checkpoint", "probe_random": "random"}
"""The probe methods and the weights of their frozen models (``probe.init``): this seed's policy
and recognizer runs, trained or their architectures randomly initialised."""

LABELS = {
    "policy": "policy alone",
    "recognizer": "recognizer alone",
    "joint": "mirror (joint)",
    "probe": "probe, trained",
    "probe_random": "probe, random init",
}
"""How tables and plots name each method."""


@dataclass
class BenchData:
    paths: list[str] = field(default_factory=lambda: ["datasets/quick"])
    """Demonstration files or folders; every method of every seed trains on them."""
    recipe: str | None = "quick"
    """Dataset recipe (a YAML path or a name in datasets/recipes/) collected into paths[0]
    when its files are missing; None: the paths must already hold the data."""

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("paths must name at least one file or folder")
        if self.recipe is not None and len(self.paths) != 1:
            raise ValueError("with a recipe, paths must be the one folder it is collected into")


@dataclass
class MethodRun:
    config: str = ""
    """Training config of the method: a YAML path or a name in configs/."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides of that config (the bench sets data.paths, seed, out, device itself)."""

    def __post_init__(self) -> None:
        if not self.config:
            raise ValueError("config must name a training config")
        bad = [o for o in self.overrides if "=" not in o]
        if bad:
            raise ValueError(f"overrides must be key=value, got {bad[0]!r}")


@dataclass
class BenchEval(EvalSettings):
    """How a benchmark evaluates its trained models: :class:`embodied.eval.settings.EvalSettings`
    (a preset's ``eval:`` section; its None means the same defaults), with held-out seeds only."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed_start < EVAL_SEED_START:
            raise ValueError(
                f"seed_start must be at least {EVAL_SEED_START} (lower seeds are demonstration seeds)"
            )


@dataclass
class BenchLauncher:
    """Where the runs of a bench go (``embodied.bench.launchers``): this machine, one run or
    several at once, or a SLURM cluster through submitit. The results do not depend on it. The
    ``slurm`` fields are submitit's parameters of the same names (AutoExecutor's)."""

    name: Literal["local", "slurm"] = "local"
    """local: on this machine; slurm: each unfinished run one job of a SLURM job array (submitit)."""
    jobs: int = 1
    """local: runs at once, each in its own process with cores // jobs training threads
    (1: one after another in this process)."""
    slurm_partition: str | None = None
    """The partition the jobs go to; None: the cluster's default."""
    timeout_min: int = 240
    """Time limit of each job in minutes; a job that reaches it is requeued and resumes from its
    last checkpoint (submitit's checkpointing; at most 3 times)."""
    cpus_per_task: int = 4
    """CPU cores of each job; training takes this many threads (unless its config sets ``threads``)."""
    gpus_per_task: int = 0
    """GPUs of each job (0: none; with one, device=auto trains on it)."""
    mem_gb: float | None = None
    """Memory of each job in GB; None: the partition's default."""
    slurm_array_parallelism: int = 256
    """At most this many jobs of one array run at once."""
    slurm_additional_parameters: dict[str, str] = field(default_factory=dict)
    """Further sbatch options, name -> value (e.g. {account: abc, qos: high, constraint: a100})."""
    slurm_setup: list[str] = field(default_factory=list)
    """Shell lines run before each job (e.g. module load cuda, source venv/bin/activate)."""
    poll_s: float = 30.0
    """How often a waiting embodied-bench asks SLURM about its jobs, in seconds."""

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")
        if self.name == "slurm" and self.jobs != 1:
            raise ValueError(
                "jobs is the local launcher's; on SLURM slurm_array_parallelism caps the runs at once"
            )
        for key in ("timeout_min", "cpus_per_task", "slurm_array_parallelism"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.gpus_per_task < 0:
            raise ValueError(f"gpus_per_task must be >= 0, got {self.gpus_per_task}")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ValueError(f"mem_gb must be positive, got {self.mem_gb}")
        if self.poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {self.poll_s}")
        self.slurm_additional_parameters = {
            str(k): str(v) for k, v in self.slurm_additional_parameters.items()
        }


@dataclass
class BenchConfig:
    name: str = "bench"
    """Name of the preset, for the report."""
    data: BenchData = field(default_factory=BenchData)
    """The demonstrations every run trains on."""
    policy: MethodRun = field(default_factory=lambda: MethodRun("policy_quick"))
    """The policy alone (mode policy)."""
    recognizer: MethodRun = field(default_factory=lambda: MethodRun("recognizer_quick"))
    """The recognizer alone (mode recognizer)."""
    joint: MethodRun = field(default_factory=lambda: MethodRun("joint_quick"))
    """Both with the mirror head (mode joint): the paper's method."""
    probe: MethodRun | None = field(default_factory=lambda: MethodRun("probe_quick"))
    """The probe of the policy and recognizer runs of the same seed, frozen (mode probe), and its
    control with probe.init=random; None: no probe."""
    shared: list[str] = field(default_factory=list)
    """Overrides applied to policy, recognizer and joint alike, after their own: the compared
    methods must train alike (steps, batch size, optimiser)."""
    seeds: int = 3
    """Training seeds 0 .. seeds-1 (1 to 1000), each running every method (the protocol asks for at
    least 3)."""
    eval: BenchEval = field(default_factory=BenchEval)
    """How the trained models are evaluated."""
    out: str = "runs/bench/quick"
    """Output folder: <method>/seed<k>/ runs, results.json, results.md, the plots."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device (auto: CUDA when present); evaluation runs on the same."""
    ablations: str | None = None
    """Override sets of the joint run to train and evaluate too, for every seed, after the
    comparison: a YAML file or a name in configs/ (``ablations``: the paper's); None: none."""
    launcher: BenchLauncher = field(default_factory=BenchLauncher)
    """Where the runs go: this machine (one or several at once) or a SLURM cluster."""

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if self.seeds > MAX_BENCH_SEEDS:
            raise ValueError(f"seeds must be at most {MAX_BENCH_SEEDS}, got {self.seeds}")
        bad = [o for o in self.shared if "=" not in o]
        if bad:
            raise ValueError(f"shared overrides must be key=value, got {bad[0]!r}")

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS if self.probe is not None else METHODS[:3]


ABLATION = "ablation/"
"""Method names of the ablation runs: ``ablation/<name>``, in ``<out>/ablation/<name>/seed<k>/``."""


def base_method(method: str) -> str:
    """The method an ablation run varies (joint); any other method is its own."""
    return "joint" if method.startswith(ABLATION) else method


def label(method: str) -> str:
    """How tables and plots name a method or an ablation run."""
    return f"ablation {method[len(ABLATION) :]}" if method.startswith(ABLATION) else LABELS[method]


def load_ablations(source: str) -> dict[str, list[str]]:
    """``{name: ["key=value", ...]}`` of an ablation file (``configs/ablations.yaml``'s layout:
    ``runs: {name: {dotted.key: value}}``), in file order. A set without overrides is the joint
    run itself and is left out."""
    path = resolve_resource(source, "configs")
    runs = load_yaml(path).get("runs")
    if not isinstance(runs, dict) or not runs:
        raise UserError(f"{path}: expected `runs:`, a mapping of run name -> overrides")
    out: dict[str, list[str]] = {}
    for name, overrides in runs.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)) or str(name) in (".", ".."):
            raise UserError(f"{path}: run name {name!r} must be a plain folder name (letters, digits, _ . -)")
        if not isinstance(overrides, dict):
            raise UserError(f"{path}: runs.{name} must map dotted keys to values, got {overrides!r}")
        if overrides:
            out[str(name)] = [f"{k}={_yaml_scalar(v)}" for k, v in overrides.items()]
    return out


def load_comparisons(source: str) -> list[tuple[str, str]]:
    """The ablation file's ``compare:`` list of ``[treatment, baseline]`` pairs, each a run of the
    file, ``policy`` or ``joint``, as methods (``ablation/<name>``): the paired differences between
    controls that the report adds to each against the policy alone and the joint run (e.g. what a
    recognizer's own loss adds: ``[episode_nolabel, episode_selfsup]``). Empty without one."""
    path = resolve_resource(source, "configs")
    pairs = load_yaml(path).get("compare") or []
    names = list(load_ablations(source))  # in file order, so the error below lists them as written
    if not isinstance(pairs, list):
        raise UserError(f"{path}: `compare:` must be a list of [treatment, baseline] pairs, got {pairs!r}")
    out = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]):
            raise UserError(
                f"{path}: compare entry {pair!r} must be [treatment, baseline], two different runs"
            )
        for name in pair:
            if name not in names and name not in ("policy", "joint"):
                known = ", ".join(["policy", "joint", *names])
                raise UserError(f"{path}: compare entry {pair!r}: no run {name!r} (runs: {known})")
        out.append(tuple(n if n in ("policy", "joint") else f"{ABLATION}{n}" for n in pair))
    return out


def ablation_title(source: str) -> str | None:
    """The ablation file's ``title:`` (the report's heading of its runs, e.g. "Controls"), or None."""
    title = load_yaml(resolve_resource(source, "configs")).get("title")
    return None if title is None else str(title)


def _yaml_scalar(value) -> str:
    """A value as the text of a ``key=value`` override (read back as YAML)."""
    import yaml

    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def load_preset(preset: str, overrides: list[str] = ()) -> BenchConfig:
    """A preset (a YAML path or a name in configs/bench/) with dotted ``key=value`` overrides."""
    return load_config(BenchConfig, resolve_resource(preset, "configs/bench"), list(overrides))
