"""Setting up torch.distributed from the launcher's environment.

`init_distributed_mode(args)` recognises, in this order:

1. torchrun (or `torch.distributed.launch --use-env`): RANK, WORLD_SIZE,
   LOCAL_RANK (and MASTER_ADDR/MASTER_PORT) in the environment;
2. an explicit set-up on the command line or from run_with_submitit.py:
   `--world_size N` (> 1), `--rank R` and a `--dist_url` other than `env://`
   (e.g. `tcp://host:port` or `file:///shared/dir/init`);
3. Slurm (`srun python main.py ...` with several tasks): SLURM_PROCID,
   SLURM_LOCALID, SLURM_NTASKS; MASTER_ADDR defaults to the first node of the
   job and MASTER_PORT to a port derived from the job id;
4. anything else: one process, not distributed.

It sets `args.distributed`, `args.rank`, `args.world_size`, `args.local_rank`,
`args.gpu` and `args.dist_backend` (nccl when the run uses CUDA, gloo
otherwise), and on CUDA selects the process's GPU. Ranks other than 0 print
only what is printed with `force=True`.
"""
from __future__ import annotations

import builtins
import datetime
import os
import subprocess
import zlib
from typing import Optional

import torch
import torch.distributed as dist

from util.misc import get_rank, get_world_size, is_dist_avail_and_initialized, is_main_process  # noqa: F401

_ORIGINAL_PRINT = builtins.print


def setup_for_distributed(is_master: bool) -> None:
    """Silence print() on non-master processes (print(..., force=True) still prints)."""

    def rank_aware_print(*args, **kwargs):
        force = kwargs.pop("force", False)
        if is_master or force:
            _ORIGINAL_PRINT(*args, **kwargs)

    builtins.print = rank_aware_print if not is_master else _ORIGINAL_PRINT


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        return None


def _uses_cuda(args) -> bool:
    return str(getattr(args, "device", "cpu")).startswith("cuda") and torch.cuda.is_available()


def _slurm_master_addr() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST") or ""
    if nodelist:
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
        # simple lists like "node1,node2" or "node[1-4]": take the first name
        first = nodelist.split(",")[0]
        if "[" in first:
            prefix, rest = first.split("[", 1)
            first = prefix + rest.split("-")[0].split(",")[0].rstrip("]")
        return first
    return "127.0.0.1"


def _slurm_master_port() -> str:
    job_id = os.environ.get("SLURM_JOB_ID", "0")
    return str(20000 + zlib.crc32(job_id.encode()) % 20000)


def detect_launcher(args) -> str:
    """'torchrun', 'explicit', 'slurm' or 'none' (see module doc)."""
    if _env_int("RANK") is not None and _env_int("WORLD_SIZE") is not None:
        return "torchrun"
    if _env_int("WORLD_SIZE") is not None and _env_int("LOCAL_RANK") is not None:
        return "torchrun"  # old torch.distributed.launch with --use_env and no RANK
    if int(getattr(args, "world_size", 1) or 1) > 1 and getattr(args, "dist_url", "env://") != "env://":
        return "explicit"
    ntasks = _env_int("SLURM_NTASKS") or _env_int("SLURM_NPROCS")
    if _env_int("SLURM_PROCID") is not None and ntasks is not None and ntasks > 1:
        return "slurm"
    return "none"


def init_distributed_mode(args) -> None:
    """Set up torch.distributed for this process (see module doc)."""
    launcher = detect_launcher(args)
    if launcher == "none":
        args.distributed = False
        args.world_size = 1
        args.rank = 0
        args.local_rank = 0
        args.gpu = 0 if _uses_cuda(args) else None
        args.dist_backend = None
        return

    if launcher == "torchrun":
        world = _env_int("WORLD_SIZE")
        local_rank = _env_int("LOCAL_RANK") or 0
        rank = _env_int("RANK")
        if rank is None:  # torch.distributed.launch of old: rank within the node
            rank = int(getattr(args, "rank", 0) or 0) * world + local_rank
            world = world * max(1, int(getattr(args, "world_size", 1) or 1))
        args.rank, args.world_size, args.local_rank = rank, world, local_rank
    elif launcher == "explicit":
        args.rank = int(args.rank)
        args.world_size = int(args.world_size)
        if getattr(args, "local_rank", None) is None:
            args.local_rank = int(getattr(args, "gpu", None) or 0)
    else:  # slurm
        args.rank = _env_int("SLURM_PROCID")
        args.local_rank = _env_int("SLURM_LOCALID") or 0
        args.world_size = _env_int("SLURM_NTASKS") or _env_int("SLURM_NPROCS")
        if args.dist_url == "env://":
            os.environ.setdefault("MASTER_ADDR", _slurm_master_addr())
            os.environ.setdefault("MASTER_PORT", _slurm_master_port())

    args.distributed = True
    if _uses_cuda(args):
        args.dist_backend = "nccl"
        args.gpu = args.local_rank % max(1, torch.cuda.device_count())
        torch.cuda.set_device(args.gpu)
    else:
        args.dist_backend = "gloo"
        args.gpu = None

    timeout_min = float(os.environ.get("DINO_DIST_TIMEOUT_MIN", "30"))
    _ORIGINAL_PRINT(f"| distributed init ({launcher}, {args.dist_backend}): rank {args.rank} of "
                    f"{args.world_size}, local rank {args.local_rank}, {args.dist_url}", flush=True)
    kwargs = dict(backend=args.dist_backend, init_method=args.dist_url, world_size=args.world_size,
                  rank=args.rank, timeout=datetime.timedelta(minutes=timeout_min))
    if args.dist_backend == "nccl":
        kwargs["device_id"] = torch.device("cuda", args.gpu)
    try:
        dist.init_process_group(**kwargs)
    except TypeError:  # torch without device_id
        kwargs.pop("device_id", None)
        dist.init_process_group(**kwargs)
    barrier()
    setup_for_distributed(args.rank == 0)


def barrier() -> None:
    if not is_dist_avail_and_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup_distributed() -> None:
    """Tear down the process group (if any) and restore print()."""
    builtins.print = _ORIGINAL_PRINT
    if is_dist_avail_and_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def broadcast_object(obj, src: int = 0):
    """`obj` of rank `src` on every rank (identity when not distributed)."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class EvalShardSampler(torch.utils.data.Sampler):
    """Every index once over all processes, in order, for evaluation.

    Rank r gets indices r, r + W, r + 2W, ...; ranks with one index fewer
    repeat their last index so that every rank runs the same number of
    iterations (collectives inside the loop stay in step). `num_real` is the
    number of leading indices of this rank that are not such repeats; the
    engine leaves the repeats out of the metrics and the COCO evaluation, so
    the numbers are those of one process evaluating every image.
    """

    def __init__(self, dataset_len: int, num_replicas: Optional[int] = None, rank: Optional[int] = None):
        self.dataset_len = int(dataset_len)
        self.num_replicas = int(num_replicas if num_replicas is not None else get_world_size())
        self.rank = int(rank if rank is not None else get_rank())
        self.indices = list(range(self.rank, self.dataset_len, self.num_replicas))
        self.num_real = len(self.indices)
        self.num_samples = -(-self.dataset_len // self.num_replicas) if self.dataset_len else 0
        while self.indices and len(self.indices) < self.num_samples:
            self.indices.append(self.indices[-1])
        if not self.indices and self.num_samples:
            self.indices = [0] * self.num_samples  # more ranks than images: repeat image 0

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
