"""Run main.py as a Slurm job through submitit (multi-GPU, multi-node, requeue on preemption).

    python run_with_submitit.py --ngpus 8 --nodes 1 --timeout 3000 --job_dir logs/DINO/R50-MS4-%j \
        -c config/DINO/DINO_4scale.py --coco_path /path/to/COCO [main.py flags ...]

Every flag of main.py is accepted; the ones here choose the job:
--ngpus (GPUs and tasks per node), --nodes, --timeout (minutes), --cpus_per_task,
--mem_gb, --partition, --qos, --job_name, --job_dir (`%j` becomes the job id;
default ./logs/submitit/%j), --requeue, --mail_user/--mail_type, --comment,
--constraint, --exclude, and --cluster (slurm by default where Slurm is found;
`local` runs the job on this machine with submitit's LocalExecutor, `debug` in
this process) with --wait to block until the job ends.

Output goes to --output_dir, or to the job dir when it is not given. When
Slurm preempts the job or its time runs out, submitit calls
`Trainer.checkpoint()`, which requeues the job with --resume set to
output_dir/checkpoint.pth, so it continues from the last complete epoch.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import uuid
from pathlib import Path
from typing import List, Optional

import main as detection


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("Submitit for DINO", parents=[detection.get_args_parser()])
    parser.add_argument("--ngpus", default=8, type=int, help="GPUs to request on each node (one task per GPU)")
    parser.add_argument("--tasks_per_node", default=None, type=int,
                        help="processes per node (default: --ngpus, or 1 without GPUs)")
    parser.add_argument("--nodes", default=1, type=int, help="number of nodes to request")
    parser.add_argument("--timeout", default=60, type=int, help="duration of the job in minutes")
    parser.add_argument("--cpus_per_task", default=16, type=int, help="CPU cores per task")
    parser.add_argument("--mem_gb", default=None, type=int, help="memory per node in GB (default: 50 per GPU)")
    parser.add_argument("--job_dir", default="", type=str,
                        help="submitit logs (and output, without --output_dir); %%j becomes the job id "
                             "(default: ./logs/submitit/%%j)")
    parser.add_argument("--job_name", type=str, default="dino", help="job name")
    parser.add_argument("--partition", type=str, default=None, help="Slurm partition")
    parser.add_argument("--qos", type=str, default=None, help="Slurm QOS (e.g. a preemptible one)")
    parser.add_argument("--requeue", action="store_true", help="let Slurm requeue the job if it is preempted")
    parser.add_argument("--mail_type", type=str, default="ALL", help="Slurm mail events (with --mail_user)")
    parser.add_argument("--mail_user", type=str, default="", help="e-mail address for Slurm notifications")
    parser.add_argument("--comment", type=str, default=None, help="Slurm comment")
    parser.add_argument("--constraint", type=str, default=None, help="Slurm constraint, e.g. volta32gb")
    parser.add_argument("--exclude", type=str, default=None, help="Slurm nodes to exclude")
    parser.add_argument("--max_num_timeout", type=int, default=30, help="times a job may be requeued on timeout")
    parser.add_argument("--cluster", type=str, default=None, choices=["slurm", "local", "debug"],
                        help="where to run (default: Slurm if available, else local)")
    parser.add_argument("--wait", action="store_true", help="wait for the job to end and report its result")
    # the device is chosen on the compute node, not on the machine that submits
    parser.set_defaults(device=None)
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def _shared_folder(job_dir: str) -> Path:
    """The deepest folder of job_dir without `%j` (it is shared by the nodes of the job)."""
    path = Path(job_dir).absolute()
    while "%j" in str(path):
        path = path.parent
    return path


def get_init_file(job_dir: str) -> Path:
    """A new file path for torch.distributed's file:// rendezvous (it must not exist yet)."""
    folder = _shared_folder(job_dir)
    folder.mkdir(parents=True, exist_ok=True)
    init_file = folder / f".dist_init_{uuid.uuid4().hex}"
    if init_file.exists():
        init_file.unlink()
    return init_file


def _resolve(path: str, job_id: str) -> str:
    return path.replace("%j", job_id) if path else path


class Trainer:
    """The submitit job: `main.main(args)` in each task, requeued from the last checkpoint."""

    def __init__(self, args: argparse.Namespace):
        self.args = args  # as submitted; every run works on a copy

    def __call__(self):
        args = copy.deepcopy(self.args)
        self._setup_task_args(args)
        status = detection.run_cli(args)
        if status != 0:
            raise RuntimeError(f"main.py stopped with exit status {status} (the message is above in this log)")
        return status

    def _output_dir(self, args, job_id: str) -> str:
        return _resolve(args.output_dir or args.job_dir, job_id)

    def _setup_task_args(self, args: argparse.Namespace) -> None:
        import submitit

        job_env = submitit.JobEnvironment()
        job_id = str(job_env.job_id)
        args.output_dir = self._output_dir(args, job_id)
        args.job_dir = _resolve(args.job_dir, job_id)
        if args.device is None:
            args.device = detection.default_device()
        args.gpu = job_env.local_rank
        args.local_rank = job_env.local_rank
        args.rank = job_env.global_rank
        args.world_size = job_env.num_tasks
        print(f"submitit task: job {job_id}, rank {args.rank} of {args.world_size}, output {args.output_dir}",
              flush=True)

    def checkpoint(self):
        """Called by submitit on preemption / timeout: requeue, resuming from checkpoint.pth."""
        import submitit

        args = copy.deepcopy(self.args)
        job_id = str(submitit.JobEnvironment().job_id)
        checkpoint_file = os.path.join(self._output_dir(args, job_id), "checkpoint.pth")
        if os.path.exists(checkpoint_file):
            args.resume = checkpoint_file
        if args.dist_url.startswith("file://"):
            args.dist_url = get_init_file(args.job_dir).as_uri()  # the old rendezvous file is used up
        print(f"Requeuing job {job_id}, resuming from {args.resume or '(nothing yet)'}", flush=True)
        return submitit.helpers.DelayedSubmission(type(self)(args))


def build_executor(args: argparse.Namespace):
    import submitit

    executor = submitit.AutoExecutor(folder=args.job_dir, cluster=args.cluster,
                                     slurm_max_num_timeout=args.max_num_timeout)
    tasks = args.tasks_per_node or (args.ngpus if args.ngpus > 0 else 1)
    params = dict(
        mem_gb=args.mem_gb if args.mem_gb is not None else 50 * max(1, args.ngpus),
        gpus_per_node=args.ngpus,
        tasks_per_node=tasks,
        cpus_per_task=args.cpus_per_task,
        nodes=args.nodes,
        timeout_min=args.timeout,
        name=args.job_name,
    )
    additional = {}
    if args.mail_user:
        additional.update({"mail-user": args.mail_user, "mail-type": args.mail_type})
    if args.requeue:
        additional["requeue"] = True
    slurm = {"slurm_partition": args.partition, "slurm_qos": args.qos, "slurm_comment": args.comment,
             "slurm_constraint": args.constraint, "slurm_exclude": args.exclude,
             "slurm_additional_parameters": additional or None}
    params.update({k: v for k, v in slurm.items() if v})
    executor.update_parameters(**params)
    return executor, tasks * args.nodes


def submit(args: argparse.Namespace):
    """Submit the training/evaluation job; returns the submitit Job."""
    if not args.job_dir:
        args.job_dir = os.path.join(os.getcwd(), "logs", "submitit", "%j")
    args.job_dir = str(Path(args.job_dir).absolute())
    if args.output_dir:
        args.output_dir = str(Path(args.output_dir).absolute())
    if args.coco_path:
        args.coco_path = str(Path(args.coco_path).absolute())
    if args.config_file:  # (without -c, the tasks take the config of the model --resume names)
        args.config_file = str(Path(args.config_file).absolute())
    args.command_txt = " ".join(sys.argv)
    executor, num_tasks = build_executor(args)
    if num_tasks > 1:
        args.dist_url = get_init_file(args.job_dir).as_uri()
    return executor.submit(Trainer(args))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    job = submit(args)
    print(f"Submitted job_id: {job.job_id}")
    print(f"Logs: {job.paths.stdout} / {job.paths.stderr}")
    if not args.wait:
        return 0
    try:
        job.results()  # one result per task
    except Exception as exc:  # noqa: BLE001 - report the job's failure in one line
        lines = str(exc).strip().splitlines()
        print(f"Job {job.job_id} failed: {lines[-1] if lines else type(exc).__name__} (log: {job.paths.stderr})",
              file=sys.stderr)
        return 1
    print(f"Job {job.job_id} finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
