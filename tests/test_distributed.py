"""Multi-process runs: launcher detection (torchrun, Slurm, explicit), the evaluation sampler,
distributed COCO evaluation equal to one process, and `torchrun --nproc_per_node 2 main.py` on CPU."""
from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import pytest

from test_train_pipeline import (PYTHON, REPO, describe, epoch_lines, main_argv, read_log, run, tiny_coco)
from util import distributed as D


# --------------------------------------------------------------------------- launcher detection
@pytest.fixture
def fake_init(monkeypatch):
    calls = {}

    def init_process_group(**kwargs):
        calls.update(kwargs)

    monkeypatch.setattr(D.dist, "init_process_group", init_process_group)
    monkeypatch.setattr(D, "barrier", lambda: None)
    monkeypatch.setattr(D, "setup_for_distributed", lambda is_master: calls.setdefault("master", is_master))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NPROCS",
                "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    return calls


def _args(**kw):
    base = dict(device="cpu", dist_url="env://", world_size=1, rank=0, local_rank=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_single_process_without_launcher(fake_init):
    args = _args()
    D.init_distributed_mode(args)
    assert not args.distributed and args.world_size == 1 and args.rank == 0 and not fake_init


def test_torchrun_environment(fake_init, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    args = _args()
    D.init_distributed_mode(args)
    assert args.distributed and (args.rank, args.world_size, args.local_rank) == (3, 4, 1)
    assert fake_init["backend"] == "gloo" and fake_init["init_method"] == "env://"
    assert fake_init["rank"] == 3 and fake_init["world_size"] == 4 and fake_init["master"] is False


def test_slurm_environment(fake_init, monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: parse the node list
    args = _args()
    D.init_distributed_mode(args)
    assert (args.rank, args.world_size, args.local_rank) == (5, 8, 1)
    import os
    assert os.environ["MASTER_ADDR"] == "gpu07" and 20000 <= int(os.environ["MASTER_PORT"]) < 40000


def test_single_task_slurm_job_is_not_distributed(fake_init, monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    args = _args()
    D.init_distributed_mode(args)
    assert not args.distributed and not fake_init


def test_explicit_rank_and_url(fake_init, tmp_path):
    url = (tmp_path / "init").as_uri()
    args = _args(world_size=2, rank=1, dist_url=url, gpu=0)
    D.init_distributed_mode(args)
    assert args.distributed and fake_init["init_method"] == url and fake_init["rank"] == 1


def test_eval_sampler_covers_each_index_once():
    for n, world in [(3, 2), (7, 3), (4, 2), (1, 2), (5, 1)]:
        samplers = [D.EvalShardSampler(n, world, r) for r in range(world)]
        assert len({len(s) for s in samplers}) == 1  # same number of iterations everywhere
        real = [i for s in samplers for i in list(s)[: s.num_real]]
        assert sorted(real) == list(range(n))


# --------------------------------------------------------------------------- distributed evaluation
EVAL_SCRIPT = textwrap.dedent('''
    """evaluate() of a fake detector whose boxes are the ground truth, jittered per image."""
    import argparse, json, sys
    import torch
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from torch.utils.data import DataLoader
    from datasets import build_dataset, get_coco_api_from_dataset
    from engine import evaluate
    from helpers_coco import make_args
    from models.dino.postprocess import PostProcess
    from util.distributed import EvalShardSampler, init_distributed_mode, cleanup_distributed
    from util.misc import collate_fn, get_rank, get_world_size

    class FakeDetector(torch.nn.Module):
        def forward(self, samples, targets):
            logits, boxes = [], []
            for t in targets:
                g = torch.Generator().manual_seed(int(t["image_id"]))
                n = len(t["labels"])
                b = torch.rand(6, 4, generator=g) * 0.4 + 0.2
                b[:n] = t["boxes"] + (torch.rand(n, 4, generator=g) - 0.5) * 0.15
                lg = torch.randn(6, 4, generator=g)
                lg[torch.arange(n), t["labels"]] += 4.0
                logits.append(lg)
                boxes.append(b.clamp(0.01, 0.99))
            return {{"pred_logits": torch.stack(logits), "pred_boxes": torch.stack(boxes)}}

    class FakeCriterion(torch.nn.Module):
        weight_dict = {{"loss_ce": 1.0}}
        def forward(self, outputs, targets):
            n = torch.tensor([float(len(targets))])
            if get_world_size() > 1:  # a collective in every iteration, like the real criterion
                torch.distributed.all_reduce(n)
            return {{"loss_ce": n}}

    args = argparse.Namespace(device="cpu", dist_url="env://", world_size=1, rank=0, local_rank=None,
                              use_dn=True, amp=False, save_results=False, print_freq=10)
    init_distributed_mode(args)
    data = make_args({coco!r}, num_classes=4, dn_labelbook_size=4, data_aug_scales=[64], data_aug_max_size=96)
    dataset = build_dataset("val", data)
    loader = DataLoader(dataset, batch_size=1, sampler=EvalShardSampler(len(dataset), get_world_size(), get_rank()),
                        collate_fn=collate_fn)
    stats, _ = evaluate(FakeDetector(), FakeCriterion(), {{"bbox": PostProcess(num_select=12)}}, loader,
                        get_coco_api_from_dataset(dataset), torch.device("cpu"), None, args=args)
    if get_rank() == 0:
        json.dump(stats["coco_eval_bbox"], open({out!r} + str(get_world_size()), "w"))
    cleanup_distributed()
''')


@pytest.mark.slow
def test_distributed_evaluation_equals_one_process(tmp_path_factory, tmp_path):
    """Two processes over 3 images (one rank repeats an image to keep in step): the same 12
    numbers as one process, on detections good enough for AP well above 0."""
    script = tmp_path / "fake_eval.py"
    out = tmp_path / "stats"
    script.write_text(EVAL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), out=str(out),
                                         coco=str(tiny_coco(tmp_path_factory))))
    one = run([PYTHON, str(script)], timeout=300)
    assert one.returncode == 0, describe(one)
    two = run([PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
              timeout=300)
    assert two.returncode == 0, describe(two)
    stats1 = json.loads(Path(str(out) + "1").read_text())
    stats2 = json.loads(Path(str(out) + "2").read_text())
    assert stats1[0] > 0.05 and stats1[1] > 0.2, stats1  # AP, AP50 well above 0: a meaningful comparison
    assert stats2 == stats1


# --------------------------------------------------------------------------- torchrun main.py
@pytest.mark.slow
def test_torchrun_two_processes_train_and_match_one_process_eval(tmp_path_factory, tmp_path):
    coco = tiny_coco(tmp_path_factory)
    out = tmp_path / "dist"
    argv = main_argv(coco, out, "--save_results", epochs=1)
    # `torchrun --standalone --nproc_per_node 2 main.py ...` (torchrun is this module's entry point)
    proc = run([PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *argv[1:]])
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.count("distributed init (torchrun, gloo): rank") == 2  # both joined a gloo group
    assert proc.stdout.count("Start training at epoch 0 of 1") == 1  # only rank 0 logs
    entry = epoch_lines(out / "log.txt")[0]
    dist_stats = entry["test_coco_eval_bbox"]
    assert len(dist_stats) == 12
    dist_results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in dist_results} == {1, 2, 3}  # every val image once, from both ranks

    single = tmp_path / "single"
    proc1 = run(main_argv(coco, single, "--eval", "--save_results", "--resume", str(out / "checkpoint.pth")))
    assert proc1.returncode == 0, describe(proc1)
    single_stats = read_log(single / "log.txt")[-1]["test_coco_eval_bbox"]
    assert single_stats == dist_stats
    single_results = json.loads((single / "results.json").read_text())

    def key(r):
        return (r["image_id"], -r["score"], r["category_id"], r["bbox"])

    a, b = sorted(dist_results, key=key), sorted(single_results, key=key)
    assert len(a) == len(b) == 3 * 20 * 4  # 20 queries x 4 classes per image
    for x, y in zip(a, b):
        assert x["image_id"] == y["image_id"] and x["category_id"] == y["category_id"]
        assert x["score"] == pytest.approx(y["score"], abs=1e-6)
        assert x["bbox"] == pytest.approx(y["bbox"], abs=1e-4)
