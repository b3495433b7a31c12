#!/usr/bin/env python
"""A local detection server: a web page to try the model, and an HTTP API.

Example (after `bash scripts/demo.sh`; then open http://127.0.0.1:8000 in a browser):

    python tools/serve.py --checkpoint demo_output/checkpoint.pth

A released model by name instead (tools/fetch_weights.py --list): `--model NAME`.

* `GET /`: drop an image on the page to see the boxes and class names drawn over it,
  with a score-threshold slider;
* `POST /predict`: `curl --data-binary @photo.jpg http://127.0.0.1:8000/predict`, or several
  images at once (`curl -F image=@a.jpg -F image=@b.jpg ...`), with optional `?threshold=0.5
  &topk=100&nms=0.7`; JSON detections per image (boxes xyxy in pixels, scores, labels, names);
* `GET /health`: status.

It listens on 127.0.0.1 (this machine only) unless --host says otherwise; there is no
authentication, so do not expose it to a network you do not trust. Requests are queued and
batched (--max_batch images per forward pass) through one model; limits: --max_upload_mb per
request, --max_pixels per image, --max_images per request, --timeout seconds per request.
A bad upload (empty, not an image, truncated, too large) gets a 4xx with a one-line reason.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def get_parser() -> argparse.ArgumentParser:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint file (main.py's, a released one, .safetensors, a URL)")
    p.add_argument("--model", help="a released model by name (tools/fetch_weights.py --list), config included")
    p.add_argument("-c", "--config_file", help="config to build the model from (default: read from the checkpoint)")
    p.add_argument("--options", nargs="+", action=DictAction, default={}, help="config overrides KEY=VALUE")
    p.add_argument("--weights_dir", "--weights-dir", dest="weights_dir", metavar="DIR",
                   help="folder of weight files looked in before any download (default: $DINO_WEIGHTS_DIR)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--threshold", type=float, default=0.3, help="default score threshold of /predict (0.3)")
    p.add_argument("--nms", type=float, default=0.7, help="default per-class NMS IoU of /predict (0.7; 0: off)")
    p.add_argument("--max_batch", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--max_upload_mb", type=float, default=20.0, help="bytes per request, in MB (default 20)")
    p.add_argument("--max_pixels", type=int, default=40_000_000, help="pixels per image (default 40 million)")
    p.add_argument("--max_images", type=int, default=16, help="images per request (default 16)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take (default 30)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPUs with AVX512-BF16/AMX, GPUs)")
    p.add_argument("--use-ema", "--use_ema", dest="use_ema", action="store_true", help="the EMA weights")
    p.add_argument("--trust_checkpoint", "--trust-checkpoint", dest="trust_checkpoint", action="store_true",
                   help="load a pickled checkpoint that holds Python objects outside the allow-list; this RUNS "
                        "CODE FROM THE FILE: only for files you trust")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


class ServeError(Exception):
    """A problem the user can fix; printed as one line."""


def check_values(opts) -> None:
    if bool(opts.checkpoint) == bool(opts.model):
        raise ServeError("give one of --checkpoint CKPT or --model NAME")
    if not 0.0 <= opts.threshold <= 1.0 or not 0.0 <= opts.nms <= 1.0:
        raise ServeError(f"--threshold {opts.threshold} / --nms {opts.nms}: both lie in [0, 1]")
    if min(opts.max_batch, opts.max_images, opts.max_pixels) < 1 or opts.max_upload_mb <= 0 or opts.timeout <= 0:
        raise ServeError("--max_batch, --max_images, --max_pixels, --max_upload_mb and --timeout must be positive")
    if not 0 <= opts.port <= 65535:
        raise ServeError(f"--port {opts.port}: a port lies in [0, 65535]")


def load_detector(opts):
    """The Detector of --checkpoint or --model."""
    from detector import Detector
    from util.zoo import use_weights_dir

    use_weights_dir(opts.weights_dir)
    if opts.model:
        return Detector.from_pretrained(opts.model, options=opts.options, device=opts.device, amp=opts.amp,
                                        config=opts.config_file)
    return Detector.from_checkpoint(opts.checkpoint, config=opts.config_file, options=opts.options,
                                    device=opts.device, use_ema=opts.use_ema, amp=opts.amp,
                                    trust_checkpoint=opts.trust_checkpoint)


def build_app(opts, detector):
    """The server's app over `detector` with the limits of the command line."""
    from util.server import ServerLimits, create_app

    limits = ServerLimits(max_upload_bytes=int(opts.max_upload_mb * 1024 * 1024), max_pixels=opts.max_pixels,
                          max_images=opts.max_images, timeout_s=opts.timeout, max_batch=opts.max_batch)

    def predict(images, threshold, topk, nms):
        return detector(images, threshold=threshold, topk=topk, nms=nms, batch_size=len(images))

    name = opts.model or os.path.basename(str(opts.checkpoint))
    return create_app(predict, detector.category_names, limits, model_name=name,
                      default_threshold=opts.threshold, default_nms=opts.nms)


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = get_parser().parse_args(argv)
    check_values(opts)
    detector = load_detector(opts)
    app = build_app(opts, detector)
    if opts.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {opts.host}: other machines can reach this server and it has no "
              f"authentication", file=sys.stderr)
    print(f"serving {opts.model or opts.checkpoint} on http://{opts.host}:{opts.port} (Ctrl-C stops it)",
          file=sys.stderr, flush=True)
    from util.server import serve
    serve(app, opts.host, opts.port)
    return 0


PEOPLE_ERRORS = ("ConfigError", "CheckpointError", "ZooError", "UnsupportedConfigError", "OutputError")


def run_cli(argv: Optional[Sequence[str]] = None) -> int:
    """main() with errors meant for people as one line and an exit status (--debug: the traceback)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return main(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends in one line (a traceback with --debug)
        if "--debug" in args:
            raise
        from util.cli import first_line, unexpected_error_line
        if isinstance(exc, ServeError) or type(exc).__name__ in PEOPLE_ERRORS:
            print(f"error: {first_line(exc)}", file=sys.stderr)
            return 2
        involved = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--checkpoint", "--model")), "the model")
        print(unexpected_error_line(exc, involved), file=sys.stderr)
        return 1


if __name__ == "__main__":
    from util.cpu_memory import reuse_freed_memory
    reuse_freed_memory()  # request after request reuses mapped pages (util/cpu_memory.py)
    sys.exit(run_cli())
