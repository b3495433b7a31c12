"""Shared helpers for tests: building args/models the way main.py does."""
import argparse
import os
from typing import Dict, List, Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A DINO small enough for unit tests on 2 CPU cores: every code path of the
# real model (multi-scale deformable attention, two-stage, denoising), tiny sizes.
TINY_OPTIONS = [
    "backbone=resnet18", "hidden_dim=32", "dim_feedforward=64", "enc_layers=1", "dec_layers=2",
    "num_queries=20", "dn_number=3", "nheads=2", "enc_n_points=2", "dec_n_points=2",
    "num_classes=5", "dn_labelbook_size=5", "backbone_pretrained=False",
]


def build_args(config: str = "config/DINO/DINO_4scale.py", options: Sequence[str] = (), extra_argv: Sequence[str] = ()):
    """Parse a command line like main.py and merge the config into the namespace."""
    from main import get_args_parser
    from util.slconfig import SLConfig

    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    argv = ["-c", os.path.join(REPO, config), "--device", "cpu", *extra_argv]
    if options:
        argv += ["--options", *options]
    args = parser.parse_args(argv)
    cfg = SLConfig.fromfile(args.config_file)
    if args.options:
        cfg.merge_from_dict(args.options)
    for key, value in cfg.to_dict().items():
        if key not in vars(args):
            setattr(args, key, value)
    from util.args import fill_auto_class_counts
    fill_auto_class_counts(args)  # no data here: 'auto' class counts are the COCO model's (91)
    return args


def tiny_args(*options: str, config: str = "config/DINO/DINO_4scale.py"):
    """Args of the tiny DINO, with `options` (k=v strings) applied last."""
    return build_args(config, TINY_OPTIONS + list(options))


def build_tiny_model(*options: str, config: str = "config/DINO/DINO_4scale.py"):
    from main import build_model_main
    torch.manual_seed(0)
    return build_model_main(tiny_args(*options, config=config))


def build_export_demo_model(*options: str):
    """(model in eval mode, postprocessors, args): the demo config with seeded random weights made to
    look learned where export checks need it (tests/test_export_onnx.py, test_export_aoti.py)."""
    from main import build_model_main
    args = build_args("config/DINO/DINO_demo.py", list(options))
    torch.manual_seed(0)
    model, _, post = build_model_main(args)
    with torch.no_grad():
        for name, p in model.named_parameters():  # learned-looking sampling points and attention
            if "sampling_offsets" in name or "attention_weights" in name or "class_embed" in name:
                p.add_(torch.randn_like(p) * 0.05)
        # all padded positions score the same in query selection; keep that score (now the class prior,
        # as in a trained model) below the selected queries, so that no exact tie at the top-k boundary,
        # which PyTorch and an exported model may break differently, decides the selection
        model.transformer.enc_output.bias.zero_()
    return model.eval(), post, args


TINY_CLASS_NAMES = {1: "circle", 2: "square", 3: "triangle", 4: "star"}


def save_tiny_checkpoint(folder, *options: str, with_optimizer: bool = False):
    """A random tiny DINO (seed 0) saved as main.py saves it: weights, args with the class names
    inside, epoch (and the AdamW state when `with_optimizer`). Returns the file's path."""
    from pathlib import Path

    from main import build_model_main
    torch.manual_seed(0)
    args = tiny_args(*(options or ("data_aug_scales=[96]", "data_aug_max_size=128")))
    args.category_names = dict(TINY_CLASS_NAMES)
    model = build_model_main(args)[0]
    saved = {"model": model.state_dict(), "args": args, "epoch": 0}
    if with_optimizer:
        saved["optimizer"] = torch.optim.AdamW(model.parameters()).state_dict()
    path = Path(folder) / "checkpoint.pth"
    torch.save(saved, path)
    return path


def make_targets(boxes_per_image: Sequence[int], num_classes: int = 5, seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """Random normalized cxcywh targets with the given object counts."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for n in boxes_per_image:
        centers = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        sizes = torch.rand(n, 2, generator=g) * 0.2 + 0.1
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=g),
                        "boxes": torch.cat([centers, sizes], 1)})
    return targets


def random_images(sizes: Sequence[Sequence[int]], seed: int = 0) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, h, w, generator=g) for h, w in sizes]


# --------------------------------------------------------------------------- a local HTTP server
class FileServer:
    """Files served from memory on 127.0.0.1 (a port of its own), for download tests.

    `files`: {url path: bytes}; `faults`: {url path: 'cut' (announce the whole length, send half,
    close: an interrupted transfer), 'slow' (the bytes in 16 pieces, 50 ms apart), 'hang' (half,
    then wait until `release()`)}. HEAD and GET answer as the Hugging Face Hub's 'resolve' URLs do
    (X-Repo-Commit, ETag), so `HF_ENDPOINT=server.url` makes huggingface_hub download from it.
    `requests` records (method, path) of every request.
    """

    def __init__(self, files=None, faults=None):
        import hashlib
        import http.server
        import threading

        self.files, self.faults, self.requests = dict(files or {}), dict(faults or {}), []
        self._release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _head(self):
                server.requests.append((self.command, self.path))
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")  # as the Hub says it
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
                self.send_header("X-Repo-Commit", "0" * 40)
                self.end_headers()
                return data

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                data = self._head()
                if data is None:
                    return
                fault = server.faults.get(self.path)
                if fault in ("cut", "hang"):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if fault == "hang":
                        server._release.wait(120)
                    self.close_connection = True
                    return
                pieces = 16 if fault == "slow" else 1
                step = -(-len(data) // pieces)
                for start in range(0, len(data), step):
                    self.wfile.write(data[start:start + step])
                    self.wfile.flush()
                    if fault == "slow":
                        import time
                        time.sleep(0.05)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def gets(self, path: str) -> int:
        """How many GET requests `path` got."""
        return sum(1 for method, p in self.requests if method == "GET" and p == path)

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
