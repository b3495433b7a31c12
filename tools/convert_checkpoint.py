"""Convert a DINO checkpoint into this project's layout, as a .pth or a .safetensors file.

    python tools/convert_checkpoint.py dino_r50_4scale_12ep.pth converted.pth
    python tools/convert_checkpoint.py dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.pth out.pth \\
        -c config/detrex/dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py
    python tools/convert_checkpoint.py logs/mine/checkpoint.pth mine.safetensors   # to share a fine-tuned model

The layout of IN is recognised from its keys (models/dino/checkpoint_layouts.py):
detrex / detectron2 checkpoints are converted, checkpoints of the original DINO
code or of this project already have this project's keys and are copied (their
weights only; checked when -c names their config). Without -c the config of a
detrex file is the one under config/detrex/ whose backbone, number of feature
levels and class count match it.

OUT keeps what IN knew: the run's settings (main.py's `args`, with its class
names and category ids) or, for a detrex file, the settings of its config, so
`tools/inference.py --checkpoint OUT` and `Detector.from_checkpoint(OUT)` need
no -c. OUT ending in .safetensors is a safetensors file (the weights, and the
settings as JSON metadata): nothing in it can run code when it is read, which
makes it the format to share models in. Any other name gets a torch file
{"model", "args", "config", "options"} that loads with torch.load(weights_only=True).

OUT is checked before IN is read: never IN (compared as files), an existing
file only with --overwrite, its folder created when missing; it is written
atomically, and nothing is written when anything does not fit. IN is read as
data: a pickled file holding other Python objects is refused unless
--trust_checkpoint (which runs code from it: only for files you trust).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from models.dino.checkpoint_layouts import (LayoutError, detect_layout, detrex_facts,  # noqa: E402
                                            detrex_to_project, find_detrex_config)
from util.atomic import OutputError, check_output_file  # noqa: E402
from util.checkpoint import CheckpointError, load_checkpoint, save_checkpoint_files  # noqa: E402
from util.args import args_from_config  # noqa: E402
from util.run_config import class_counts_from_checkpoint  # noqa: E402
from util.run_config import RUN_ONLY_KEYS, recorded_settings  # noqa: E402
from util.slconfig import ConfigError, DictAction  # noqa: E402


class ConvertError(RuntimeError):
    """A problem for the person running the tool (one line)."""


def build_model_state(args) -> Dict[str, torch.Tensor]:
    """Shapes of the model `args` builds (on the meta device when the builders allow it: no memory)."""
    from models import build_model
    try:
        with torch.device("meta"):
            model = build_model(args)[0]
    except Exception:  # noqa: BLE001 - some builders compute on real tensors; build on the CPU then
        model = build_model(args)[0]
    return model.state_dict()


def check_fits(state: Dict[str, torch.Tensor], model_state: Dict[str, torch.Tensor], config: str) -> None:
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    wrong = [f"{k} {list(state[k].shape)} vs {list(model_state[k].shape)}" for k in state
             if k in model_state and tuple(state[k].shape) != tuple(model_state[k].shape)]
    name = os.path.relpath(config)
    if wrong:
        raise ConvertError(f"the checkpoint does not fit {name}: {len(wrong)} tensors have other shapes "
                           f"(e.g. {wrong[0]}); use the config it was trained with (-c)")
    if missing or unexpected:
        parts = ([f"{len(missing)} model keys missing (e.g. {missing[0]})"] if missing else []) + \
                ([f"{len(unexpected)} keys the model lacks (e.g. {unexpected[0]})"] if unexpected else [])
        raise ConvertError(f"the checkpoint does not fit {name}: {'; '.join(parts)}; use the config it was "
                           f"trained with (-c)")


def _weights(checkpoint: Dict[str, Any], src: str, ema: bool) -> Dict[str, torch.Tensor]:
    if not ema:
        return checkpoint["model"]
    state = checkpoint.get("ema_state") or checkpoint.get("ema_model")  # detrex: ema_state; main.py: ema_model
    if not isinstance(state, dict) or not state:
        raise ConvertError(f"{src} holds no EMA weights (no 'ema_state' / 'ema_model' entry); drop --ema")
    return state


def settings_to_keep(recorded: Optional[Dict[str, Any]], args: Optional[argparse.Namespace]) -> Optional[dict]:
    """The settings OUT records: IN's own (main.py's args), else those of the config used; the
    flags of the run that wrote IN (paths, devices, ranks) are left out."""
    source = recorded if recorded is not None else (vars(args) if args is not None else None)
    if source is None:
        return None
    return {k: v for k, v in source.items() if k not in RUN_ONLY_KEYS}


def convert(src: str, config: Optional[str], options: Optional[Dict[str, Any]] = None, ema: bool = False,
            trust: bool = False) -> Tuple[Dict[str, torch.Tensor], Optional[str], Optional[dict], List[str]]:
    """(converted state dict, config used (None: not checked), settings to record, lines describing it)."""
    checkpoint = load_checkpoint(src, "input", trust=trust)
    state = _weights(checkpoint, src, ema)
    recorded = recorded_settings(checkpoint)
    layout = detect_layout(state, checkpoint)
    lines = [f"{src}: {layout} layout, {len(state)} tensors"]
    args = None
    if layout == "detrex":
        facts = detrex_facts(state)
        lines.append("detrex model: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
        config = config or find_detrex_config(facts)
        args = args_from_config(config, options)
        state, notes = detrex_to_project(state, args)
        lines += ["  " + n for n in notes]
    else:
        lines.append("  keys kept as they are (this project uses the original DINO's names)")
        if config is not None:
            args = args_from_config(config, options)
            class_counts_from_checkpoint(args, checkpoint)  # 'auto' in the config: the file's own counts
    if args is not None:
        check_fits(state, build_model_state(args), config)
        lines.append(f"fits {os.path.relpath(config)}: {len(state)} tensors")
    elif recorded is None:
        lines.append("  no config given (-c) and none recorded in the file: shapes not checked, no settings kept")
    settings = settings_to_keep(recorded, args)
    if settings is not None:
        names = settings.get("category_names") or {}
        lines.append(f"  settings kept: {len(settings)} keys" + (f", {len(names)} class names" if names else ""))
    return state, config, settings, lines


def write_output(path: str, state: Dict[str, torch.Tensor], settings: Optional[dict], config: Optional[str],
                 options: Optional[Dict[str, Any]], src: str) -> None:
    """`path` as safetensors (by its extension) or as a torch file; atomically either way."""
    extra = {"config": os.path.relpath(config, ROOT) if config else None, "options": dict(options or {}),
             "converted_from": os.path.basename(src)}
    if settings is not None:
        extra["args"] = settings
    if path.endswith(".safetensors"):
        from util.weights_io import write_safetensors
        write_safetensors(path, state, extra)
    else:
        save_checkpoint_files({"model": state, **extra}, [path])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n"
                                            "  python tools/convert_checkpoint.py detrex.pth converted.pth\n"
                                            "  python tools/convert_checkpoint.py detrex.pth converted.pth "
                                            "-c config/detrex/dino_r50_4scale_12ep.py\n"
                                            "  python tools/convert_checkpoint.py demo_output/checkpoint.pth "
                                            "demo_output/demo.safetensors")
    parser.add_argument("input", help="checkpoint to convert (detrex, original DINO or this project; .pth or "
                                      ".safetensors)")
    parser.add_argument("output", help="file to write: NAME.safetensors, or a torch file {'model', 'args', ...}")
    parser.add_argument("-c", "--config", help="config the checkpoint belongs to (default: found from its keys)")
    parser.add_argument("--options", nargs="+", action=DictAction, default={}, metavar="KEY=VALUE",
                        help="config overrides, as main.py's --options (the model the weights are for)")
    parser.add_argument("--ema", action="store_true",
                        help="convert the EMA weights the file holds (detrex: 'ema_state') instead of 'model'")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--trust_checkpoint", "--trust-checkpoint", dest="trust_checkpoint", action="store_true",
                        help="read a pickled IN that holds Python objects outside the allow-list; this RUNS CODE "
                             "FROM THE FILE: only for files you trust")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    opt = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        if opt.config and not os.path.isfile(opt.config):
            raise ConvertError(f"config {opt.config} does not exist")
        if opt.options and not opt.config:
            raise ConvertError("--options needs the config they change (-c)")
        if not os.path.isfile(opt.input) and not opt.input.startswith(("http://", "https://")):
            raise ConvertError(f"input {opt.input}: no such file")
        output = check_output_file(opt.output, inputs=[opt.input], overwrite=opt.overwrite, flag="OUT")
        state, config, settings, lines = convert(opt.input, opt.config, opt.options, opt.ema, opt.trust_checkpoint)
        print("\n".join(lines))
        write_output(output, state, settings, config, opt.options, opt.input)
        print(f"wrote {opt.output}")
        return 0
    except (ConvertError, LayoutError, CheckpointError, OutputError, ConfigError, ValueError, KeyError,
            OSError) as exc:
        if opt.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            message = f"{getattr(exc, 'filename', None) or opt.input}: {exc.strerror or message}"
        print(f"error: {message}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the files, the traceback with --debug
        if opt.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, f"{opt.input} -> {opt.output}"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
