"""run_with_submitit.py: the Slurm job parameters, requeue from the last checkpoint, and a real
job through submitit's LocalExecutor that is preempted mid-run and still ends as an
uninterrupted run."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import run_with_submitit as rws
from test_train_pipeline import (CONFIG, REPO, TINY_OPTIONS, assert_same_weights, epoch_lines, load_ckpt,
                                 straight_run, tiny_coco)


def test_defaults_and_slurm_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_bin = tmp_path / "bin"  # submitit's Slurm executor wants an srun on PATH; nothing is submitted
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    args = rws.parse_args(["-c", CONFIG, "--coco_path", "C", "--partition", "gpu", "--qos", "high", "--requeue",
                           "--nodes", "2", "--ngpus", "4", "--timeout", "3000", "--mail_user", "me@x.org",
                           "--job_dir", str(tmp_path / "jobs" / "%j"), "--cluster", "slurm"])
    assert args.device is None  # decided on the compute node, not where the job is submitted
    executor, tasks = rws.build_executor(args)
    assert tasks == 8
    text = executor._executor._make_submission_file_text("python -c 'pass'", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --qos=high", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --gpus-per-node=4", "#SBATCH --time=3000", "#SBATCH --requeue", "#SBATCH --mail-user=me@x.org",
                 "#SBATCH --signal=USR2@"):
        assert line in text, line
    assert "comp_robot" not in text
    # no --job_dir: a folder under the current directory
    plain = rws.parse_args(["-c", CONFIG, "--cluster", "debug"])
    assert plain.job_dir == ""
    init = rws.get_init_file(str(tmp_path / "jobs" / "%j"))
    assert init.parent == tmp_path / "jobs" and not init.exists()


def test_checkpoint_requeues_from_output_dir_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "77")
    args = rws.parse_args(["-c", CONFIG, "--coco_path", "C", "--job_dir", str(tmp_path / "job_%j"),
                           "--resume", "/elsewhere/start.pth", "--dist_url", (tmp_path / "old_init").as_uri()])
    trainer = rws.Trainer(args)
    delayed = trainer.checkpoint()
    assert delayed.function.args.resume == "/elsewhere/start.pth"  # nothing saved yet: as submitted
    out = tmp_path / "job_77"
    out.mkdir()
    (out / "checkpoint.pth").write_bytes(b"x")
    delayed = trainer.checkpoint()
    new_args = delayed.function.args
    assert new_args.resume == str(out / "checkpoint.pth")
    assert new_args.dist_url != args.dist_url and new_args.dist_url.startswith("file://")
    assert args.resume == "/elsewhere/start.pth"  # the submitted args are not modified
    assert not hasattr(new_args, "hidden_dim")  # a requeued run merges the config afresh


@pytest.mark.slow
def test_local_executor_job_preempted_and_requeued(tmp_path_factory, tmp_path, monkeypatch):
    """A 2-epoch job through submitit's LocalExecutor, preempted (SIGUSR2, as Slurm sends it)
    while it writes its epoch-1 checkpoint: submitit calls Trainer.checkpoint, the job is
    requeued, continues from epoch 0's checkpoint and ends with the weights of a run that was
    never interrupted."""
    coco = tiny_coco(tmp_path_factory)
    marker = tmp_path / "paused"
    for key, value in dict(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                           DINO_FAULT_CKPT="before_replace@checkpoint.pth#2",
                           DINO_FAULT_MARKER=str(marker)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    job_dir = tmp_path / "jobs" / "%j"
    args = rws.parse_args(["--cluster", "local", "--ngpus", "0", "--timeout", "20", "--job_dir", str(job_dir),
                           "-c", CONFIG, "--coco_path", str(coco), "--num_workers", "0", "--print_freq", "1",
                           "--device", "cpu", "--options", "epochs=2", *TINY_OPTIONS])
    job = rws.submit(args)
    try:
        deadline = time.time() + 400
        while not marker.exists():
            assert not job.done(), open(job.paths.stdout).read()[-3000:] + open(job.paths.stderr).read()[-3000:]
            assert time.time() < deadline, "the job never reached its epoch-1 checkpoint"
            time.sleep(0.2)
        controller = job._process.pid
        tasks = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
        assert len(tasks) == 1
        os.kill(int(tasks[0]), signal.SIGUSR2)  # what Slurm sends before preemption / timeout
        while not job.done():
            assert time.time() < deadline + 300, "the requeued job did not finish"
            time.sleep(0.5)
        assert job.result() == 0
    finally:
        if not job.done():
            job.cancel()
    log = Path(job.paths.stdout).read_text()
    assert "Calling checkpoint method" in log and f"Requeued job {job.job_id}" in log
    out = Path(str(job_dir).replace("%j", str(job.job_id)))  # the output dir defaults to the job dir
    assert "auto-resume" not in log and f"Loaded checkpoint {out / 'checkpoint.pth'} (--resume, epoch 0)" in log
    reference = straight_run(tmp_path_factory) / "out"
    assert_same_weights(load_ckpt(out / "checkpoint.pth"), load_ckpt(reference / "checkpoint.pth"))
    assert [e["epoch"] for e in epoch_lines(out / "log.txt")] == [0, 1]
    assert epoch_lines(out / "log.txt")[1]["train_loss"] == epoch_lines(reference / "log.txt")[1]["train_loss"]


@pytest.mark.slow
def test_command_line_two_tasks_through_local_executor(tmp_path_factory, tmp_path):
    """`run_with_submitit.py --cluster local --tasks_per_node 2 --wait`: two processes meet
    through the file rendezvous in the job dir's parent, train one epoch and evaluate."""
    import subprocess

    from test_train_pipeline import PYTHON, cli_env, describe

    coco = tiny_coco(tmp_path_factory)
    job_dir = tmp_path / "jobs" / "%j"
    argv = [PYTHON, "run_with_submitit.py", "--cluster", "local", "--wait", "--ngpus", "0", "--tasks_per_node", "2",
            "--timeout", "20", "--job_dir", str(job_dir), "-c", CONFIG, "--coco_path", str(coco),
            "--num_workers", "0", "--device", "cpu", "--options", "epochs=1", *TINY_OPTIONS]
    proc = subprocess.run(argv, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, describe(proc)
    job_id = proc.stdout.split("Submitted job_id: ")[1].split()[0]
    assert f"Job {job_id} finished" in proc.stdout
    out = tmp_path / "jobs" / job_id
    logs = (out / f"{job_id}_0_log.out").read_text() + (out / f"{job_id}_1_log.out").read_text()
    assert logs.count("distributed init (explicit, gloo): rank") == 2 and "file://" in logs
    assert load_ckpt(out / "checkpoint.pth")["epoch"] == 0
    assert [e["epoch"] for e in epoch_lines(out / "log.txt")] == [0]
