"""Where a bench's runs go: several at once on this machine, or a real one-node SLURM cluster
(tests/slurm_fixture.py: munged, slurmctld and slurmd started here as root) through submitit;
and embodied-train started by srun on several tasks.

The bench is the tiny preset on the shared demonstrations (tests/conftest.py; as
tests/test_bench.py's ``tiny_bench``), two methods (policy, recognizer) of 2 steps. Where SLURM
cannot be started the SLURM tests skip and say why. Each SLURM job here is a fresh Python that
imports torch and MuJoCo: 10-15 s on this 2-core machine, two at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

TWO_METHODS = ["policy", "recognizer"]


def tiny(demo_dir: Path, out: Path, *overrides: str):
    from embodied.bench import load_preset

    return load_preset("tiny", [f"data.paths=[{demo_dir}]", f"out={out}", *overrides])


SLURM = ("launcher.name=slurm", "launcher.cpus_per_task=1", "launcher.poll_s=0.5", "launcher.timeout_min=10")
"""The tiny bench on the test cluster: one core a job (two at once on this machine)."""


def numbers(out: Path) -> dict:
    """The numbers of a bench's results.json: each run's metrics, the summary, the paired differences."""
    data = json.loads((out / "results.json").read_text())
    runs = {m: {s: r["metrics"] for s, r in seeds.items()} for m, seeds in data["runs"].items()}
    return {"runs": runs, "summary": data["summary"], "paired": data["paired"]}


def assert_same_weights(a: Path, b: Path) -> None:
    """Every model tensor of two runs' last checkpoints is bit for bit the same."""
    import torch

    def tensors(run: Path) -> dict:
        saved = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        out = {}

        def walk(prefix, value):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}", v)
            elif isinstance(value, torch.Tensor):
                out[prefix] = value

        walk("models", saved["models"])
        return out

    ta, tb = tensors(a), tensors(b)
    assert ta and set(ta) == set(tb)
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{a} and {b} differ in {different[:3]}"


# --------------------------------------------------------------------------- the plan
def test_runs_wait_for_the_runs_whose_checkpoints_they_read(demo_dir, tmp_path):
    import dataclasses

    from embodied.bench.launchers import plan

    ablations = tmp_path / "abl.yaml"
    ablations.write_text(
        "runs:\n  frozen_u: {mode: frozen_u, recognizer: null}\n  tau: {mirror.temperature: 0.2}\n"
    )
    cfg = dataclasses.replace(tiny(demo_dir, tmp_path / "b"), ablations=str(ablations))
    runs = {r.key: r for r in plan(cfg, [0, 1])}
    assert list(runs)[:5] == [(m, 0) for m in ("policy", "recognizer", "joint", "probe", "probe_random")]
    assert runs[("probe", 1)].needs == (("policy", 1), ("recognizer", 1))
    assert runs[("probe_random", 0)].needs == (("policy", 0), ("recognizer", 0))
    assert runs[("ablation/frozen_u", 1)].needs == (("recognizer", 1),)
    assert runs[("joint", 0)].needs == () and runs[("ablation/tau", 0)].needs == ()
    only = plan(cfg, [1], ["probe", "ablation/tau"])
    assert [r.key for r in only] == [("probe", 1), ("ablation/tau", 1)]
    from embodied.errors import UserError

    with pytest.raises(UserError, match="method 'probes' is not one of the bench's runs"):
        plan(cfg, [0], ["probes"])


def test_launcher_flags_become_the_presets_launcher_section(tmp_path, capsys):
    from embodied.bench import load_preset
    from embodied.cli.bench import launcher_overrides, main, minutes, parser

    argv = [
        "--launcher=slurm",
        "--slurm-partition=gpu",
        "--slurm-time=1-02:30",
        "--slurm-cpus-per-task=16",
        "--slurm-gpus-per-task=1",
        "--slurm-mem=64",
        "--slurm-array-parallelism=8",
        "--slurm-additional=account=abc",
        "--slurm-additional=constraint=a100",
    ]
    cfg = load_preset("quick", launcher_overrides(parser().parse_intermixed_args(argv)))
    launcher = cfg.launcher
    assert (launcher.name, launcher.slurm_partition, launcher.timeout_min) == ("slurm", "gpu", 26 * 60 + 30)
    assert (launcher.cpus_per_task, launcher.gpus_per_task, launcher.mem_gb) == (16, 1, 64.0)
    assert launcher.slurm_array_parallelism == 8
    assert launcher.slurm_additional_parameters == {"account": "abc", "constraint": "a100"}
    assert (minutes("90"), minutes("2:00:00"), minutes("0:01:30")) == (90, 120, 2)
    assert load_preset("quick").launcher.name == "local" and load_preset("quick").launcher.jobs == 1

    out = str(tmp_path / "b")
    assert main(["--preset", "quick", "--out", out, "--jobs", "0"]) == 2
    assert main(["--preset", "quick", "--out", out, "--launcher", "slurm", "--jobs", "2"]) == 2
    assert main(["--preset", "quick", "--out", out, "--slurm-additional", "account"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "jobs must be at least 1" in err[0] and "slurm_array_parallelism caps" in err[1]
    assert "NAME=VALUE" in err[2]


# --------------------------------------------------------------------------- srun's environment
def test_slurm_step_gives_rank_world_size_and_rendezvous(monkeypatch):
    from embodied.train import distributed

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    # the batch script itself: SLURM_NTASKS and SLURM_PROCID, but no step: one process alone
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    assert distributed.launch() == distributed.Launch()
    # a task of `srun` with 4 tasks on 2 nodes
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert distributed.launch() == distributed.Launch(4, 3, 1, "slurm")
    assert distributed.launched_rank() == 3 and distributed._launched_together()
    monkeypatch.setenv("MASTER_ADDR", "node7")
    assert distributed.slurm_rendezvous() == ("node7", 10000 + 123456 % 20000)
    monkeypatch.setenv("MASTER_PORT", "29400")
    assert distributed.slurm_rendezvous() == ("node7", 29400)
    # torchrun's variables win when both are set (torchrun started inside a SLURM job)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launch() == distributed.Launch(2, 1, 1, "torchrun")


# --------------------------------------------------------------------------- SLURM
@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node SLURM cluster for the session (SLURM_CONF points at it), or a skip saying why not."""
    from slurm_fixture import ClusterUnavailable, start_cluster

    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as err:
        pytest.skip(f"no SLURM cluster here: {err}")
    old = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def squeue_state(job: str) -> str:
    done = subprocess.run(
        ["squeue", "-h", "-j", job, "-t", "all", "-o", "%T"], capture_output=True, text=True
    )
    return done.stdout.strip()


def test_slurm_no_wait_submits_and_a_rerun_collects_without_submitting_twice(slurm, demo_dir, tmp_path):
    """--no-wait submits and returns; the same command while the job is queued or running
    submits nothing; the same command after it finished collects it and writes the report."""
    from embodied.bench import run_bench
    from embodied.bench.jobs import JOB_FILE, job_states
    from embodied.cli.bench import main

    out = tmp_path / "bench"
    argv = ["--preset", "tiny", f"data.paths=[{demo_dir}]", "--out", str(out), "--only-methods", "policy"]
    argv += ["--only-seeds", "0", "--launcher", "slurm", "--slurm-cpus-per-task", "1", "launcher.poll_s=0.5"]
    assert main([*argv, "--no-wait"]) == 0
    record = json.loads((out / "policy" / "seed0" / JOB_FILE).read_text())
    job = record["job_id"]
    assert record["method"] == "policy" and record["seed"] == 0 and record["after"] == []
    assert squeue_state(job) in ("PENDING", "CONFIGURING", "RUNNING")

    cfg = tiny(demo_dir, out, *SLURM)
    again = run_bench(cfg, only_seeds=[0], only_methods=["policy"], wait=False)
    assert again["submitted"] == [] and again["queued"] == [("policy", 0)]  # not submitted twice
    assert json.loads((out / "policy" / "seed0" / JOB_FILE).read_text())["job_id"] == job

    collected = run_bench(cfg, only_seeds=[0], only_methods=["policy"])  # waits for it
    assert collected["submitted"] == [] and collected["ran"] == [("policy", 0)] and not collected["failed"]
    assert job_states([job])[job] in ("RUNNING", "COMPLETING", "COMPLETED")  # done: bench.json is there
    marker = json.loads((out / "policy" / "seed0" / "bench.json").read_text())
    assert marker["provenance"]["threads"] == 1  # the job's cpus_per_task
    assert (out / "results.json").is_file() and Path(record["stdout"]).is_file()
    last = run_bench(cfg, only_seeds=[0], only_methods=["policy"])
    assert last["skipped"] == [("policy", 0)] and last["submitted"] == [] and last["ran"] == []


@pytest.fixture(scope="module")
def local_reference(demo_dir, tmp_path_factory):
    """The two-method tiny bench run here, one run after another (the default launcher)."""
    from embodied.bench import run_bench

    out = tmp_path_factory.mktemp("local")
    result = run_bench(tiny(demo_dir, out), only_methods=TWO_METHODS)
    assert len(result["ran"]) == 4
    return out


@pytest.mark.slow
def test_local_jobs_2_gives_the_results_of_one_at_a_time(local_reference, demo_dir, tmp_path):
    from embodied.bench import run_bench

    out = tmp_path / "bench"
    result = run_bench(tiny(demo_dir, out, "launcher.jobs=2"), only_methods=TWO_METHODS)
    assert sorted(result["ran"]) == sorted((m, s) for m in TWO_METHODS for s in (0, 1))
    assert not result["failed"]
    assert numbers(out) == numbers(local_reference)
    for run in ("policy/seed0", "recognizer/seed1"):
        assert_same_weights(out / run, local_reference / run)
    assert run_bench(tiny(demo_dir, out, "launcher.jobs=2"), only_methods=TWO_METHODS)["ran"] == []


def _cancel_when_running(cfg, key, found: dict) -> None:
    """Wait for ``key``'s job to run, then scancel it (in a thread, while the bench waits)."""
    from embodied.bench.jobs import read_record

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        record = read_record(cfg, key)
        if record is not None:
            state = squeue_state(record["job_id"])
            if state == "RUNNING":
                subprocess.run(["scancel", record["job_id"]], check=True)
                found["job"] = record["job_id"]
                return
            if state not in ("PENDING", "CONFIGURING", ""):
                found["error"] = f"job {record['job_id']} was {state} before it could be cancelled"
                return
        time.sleep(0.2)
    found["error"] = "the job never ran"


@pytest.mark.slow
def test_slurm_bench_survives_a_cancelled_job_and_a_rerun_matches_the_local_run(
    slurm, local_reference, demo_dir, tmp_path
):
    """Two methods x two seeds as one job array; one job is cancelled while it runs: the bench
    reports it with its job, log and the log's last lines, the others finish; the rerun
    submits only that run, and the report is the local run's."""
    from embodied.bench import run_bench

    out = tmp_path / "bench"
    cfg = tiny(demo_dir, out, *SLURM)
    found: dict = {}
    canceller = threading.Thread(target=_cancel_when_running, args=(cfg, ("policy", 1), found))
    canceller.start()
    first = run_bench(cfg, only_methods=TWO_METHODS)
    canceller.join()
    assert "error" not in found, found["error"]
    [failure] = first["failed"]
    assert failure.run.key == ("policy", 1) and failure.job == found["job"]
    assert failure.why.startswith("job ended CANCELLED") and Path(failure.log).is_file()
    assert failure.tail and failure.tail[-1] in Path(failure.log).read_text()  # srun's last words
    assert sorted(first["ran"]) == [("policy", 0), ("recognizer", 0), ("recognizer", 1)]
    assert (
        len({job for _, job in first["submitted"]}) == 4
        and len({j.split("_")[0] for _, j in first["submitted"]}) == 1
    )
    assert not (out / "policy" / "seed1" / "bench.json").exists()

    rerun = run_bench(cfg, only_methods=TWO_METHODS)
    assert [key for key, _ in rerun["submitted"]] == [("policy", 1)] and rerun["ran"] == [("policy", 1)]
    assert sorted(rerun["skipped"]) == [("policy", 0), ("recognizer", 0), ("recognizer", 1)]
    assert not rerun["failed"]
    assert numbers(out) == numbers(local_reference)
    for run in ("policy/seed0", "policy/seed1", "recognizer/seed1"):
        assert_same_weights(out / run, local_reference / run)


@pytest.mark.slow
def test_slurm_probe_waits_for_its_policy_and_recognizer_jobs(slurm, demo_dir, tmp_path):
    """The probe reads its seed's policy and recognizer runs: submitted with them, held by SLURM
    until both succeeded (afterok). The policy's job cancelled, SLURM cancels the probe's too; the
    rerun submits both (the probe after the new policy job alone), and the numbers are the local
    run's."""
    from embodied.bench import run_bench
    from embodied.bench.jobs import read_record

    methods = ["policy", "recognizer", "probe"]
    local = tmp_path / "local"
    run_bench(tiny(demo_dir, local), only_seeds=[0], only_methods=methods)
    out = tmp_path / "bench"
    cfg = tiny(demo_dir, out, *SLURM)
    found: dict = {}
    canceller = threading.Thread(target=_cancel_when_running, args=(cfg, ("policy", 0), found))
    canceller.start()
    first = run_bench(cfg, only_seeds=[0], only_methods=methods)
    canceller.join()
    assert "error" not in found, found["error"]
    ids = {key[0]: job for key, job in first["submitted"]}
    assert read_record(cfg, ("probe", 0))["after"] == sorted([ids["policy"], ids["recognizer"]])
    assert first["ran"] == [("recognizer", 0)]
    failed = {f.run.method: f for f in first["failed"]}
    assert set(failed) == {"policy", "probe"} and failed["policy"].job == found["job"]
    assert failed["probe"].why.startswith("job ended CANCELLED (DependencyNeverSatisfied)")

    rerun = run_bench(cfg, only_seeds=[0], only_methods=methods)
    ids = {key[0]: job for key, job in rerun["submitted"]}
    assert set(ids) == {"policy", "probe"} and rerun["skipped"] == [("recognizer", 0)]
    assert read_record(cfg, ("probe", 0))["after"] == [ids["policy"]]  # the recognizer has finished
    assert not rerun["failed"] and sorted(rerun["ran"]) == [("policy", 0), ("probe", 0)]
    assert numbers(out) == numbers(local)
    assert_same_weights(out / "probe" / "seed0", local / "probe" / "seed0")


@pytest.mark.slow
def test_srun_of_two_tasks_trains_as_torchrun_does(slurm, demo_dir, tmp_path):
    """embodied-train under srun -n 2 finds its rank, world size and rendezvous in SLURM's
    environment: two processes, the weights of torchrun --nproc_per_node=2's run."""
    common = [
        "policy_quick",
        "--overwrite",
        f"data.paths=[{demo_dir}]",
        "steps=2",
        "val_every=2",
        "ckpt_every=2",
        "log_every=1",
        "data.batch_size=4",
        "optim.warmup_steps=0",
        "policy.hidden_dim=16",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    srun = ["srun", "-n", "2", "--cpus-per-task=1", "--kill-on-bad-exit=1", "embodied-train"]
    done = subprocess.run(
        [*srun, *common, "--out", str(tmp_path / "srun")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    torchrun = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "embodied.cli.train"]
    done = subprocess.run(
        [*torchrun, *common, "--out", str(tmp_path / "torchrun")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "srun" / "summary.json").read_text())
    assert summary["processes"] == 2
    assert_same_weights(tmp_path / "srun", tmp_path / "torchrun")


@pytest.mark.slow
def test_slurm_job_at_its_time_limit_is_requeued_and_resumes_from_its_checkpoint(slurm, demo_dir, tmp_path):
    """The signal SLURM sends before the time limit (USR2, as submitit's own test helper sends it)
    once the run has a checkpoint: submitit requeues the job under the same id, and the run goes
    on from checkpoints/last.pt instead of starting again."""
    from embodied.bench import run_bench
    from embodied.bench.jobs import read_record

    shared = "steps=600, data.batch_size=4, optim.warmup_steps=0, val_every=600, ckpt_every=10, log_every=10"
    cfg = tiny(demo_dir, tmp_path / "bench", *SLURM, f"shared=[{shared}]")
    run = tmp_path / "bench" / "policy" / "seed0"
    found: dict = {}

    def interrupt() -> None:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints" / "last.pt").exists():
            if time.monotonic() > deadline:
                found["error"] = "no checkpoint was written"
                return
            time.sleep(0.1)
        job = found["job"] = read_record(cfg, ("policy", 0))["job_id"]
        subprocess.run(["scancel", job, "--signal", "USR2"], check=True)
        while time.monotonic() < deadline:  # SLURM holds a requeued job ~2 min: let it go at once here
            done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True)
            if done.stdout.split()[:2] == ["PENDING", "BeginTime"]:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
                return
            if (run / "bench.json").exists():
                found["error"] = "the run finished before it was requeued"
                return
            time.sleep(0.2)
        found["error"] = "the job was not requeued"

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    result = run_bench(cfg, only_seeds=[0], only_methods=["policy"])
    interrupter.join()
    assert "error" not in found, found["error"]
    assert result["ran"] == [("policy", 0)] and not result["failed"]
    record = read_record(cfg, ("policy", 0))
    assert record["job_id"] == found["job"]  # the same job, requeued
    assert json.loads((run / "summary.json").read_text())["resumed_from"] >= 10
    log = Path(record["stdout"]).read_text() + Path(record["stderr"]).read_text()  # both attempts
    assert f"Requeued job {found['job']}" in log and "seed 0, policy alone: resuming (600 steps)" in log
