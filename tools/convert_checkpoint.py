"""Convert a DINO checkpoint of another code base into this project's layout.

    python tools/convert_checkpoint.py dino_r50_4scale_12ep.pth converted.pth
    python tools/convert_checkpoint.py dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.pth out.pth \\
        -c config/detrex/dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py

The layout of IN is recognised from its keys (models/dino/checkpoint_layouts.py):
detrex / detectron2 checkpoints are converted, checkpoints of the original DINO
code or of this project already have this project's keys and are copied (their
weights only; checked when -c names their config). The result is checked against the model the config builds (every key present,
every shape equal) and written atomically as {"model": state_dict, "config":
the config used}; OUT is never IN, and nothing is written when anything does
not fit. Without -c the config is the one under config/detrex/ whose backbone,
number of feature levels and class count match the checkpoint.

Then evaluate with `main.py -c CONFIG --eval --resume OUT` (main.py also
converts a detrex file given to --resume / --pretrain_model_path directly).
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from models.dino.checkpoint_layouts import (LayoutError, detect_layout, detrex_facts,  # noqa: E402
                                            detrex_to_project)
from util.checkpoint import CheckpointError, load_checkpoint, save_checkpoint_files  # noqa: E402

DETREX_CONFIGS = os.path.join(ROOT, "config", "detrex")


class ConvertError(RuntimeError):
    """A problem for the person running the tool (one line)."""


def config_args(config_file: str, options: Sequence[str] = ()):
    """The argparse namespace main.py would build for `config_file` and `--options` (config keys copied onto it)."""
    from main import apply_config, get_args_parser, load_config
    argv = ["-c", config_file, "--device", "cpu"] + (["--options", *options] if options else [])
    args = get_args_parser().parse_args(argv)
    cfg, _ = load_config(args)
    apply_config(cfg, args)
    return args


def _config_facts(path: str) -> Tuple[str, int, int]:
    from util.slconfig import SLConfig
    cfg = SLConfig.fromfile(path).to_dict()
    return cfg.get("backbone"), cfg.get("num_feature_levels"), cfg.get("num_classes")


def find_config(facts: Dict[str, object]) -> str:
    """The config/detrex/ config matching a detrex checkpoint's backbone, levels and classes."""
    if facts["backbone"] is None:
        raise ConvertError("cannot tell which backbone this detrex checkpoint holds; name its config with -c")
    wanted = (facts["backbone"], facts["num_feature_levels"], facts["num_classes"])
    for path in sorted(glob.glob(os.path.join(DETREX_CONFIGS, "dino_*.py"))):
        if _config_facts(path) == wanted:
            return path
    raise ConvertError(f"no config under {os.path.relpath(DETREX_CONFIGS)} has backbone={wanted[0]}, "
                       f"num_feature_levels={wanted[1]}, num_classes={wanted[2]}; name a config with -c")


def build_model_state(args) -> Dict[str, torch.Tensor]:
    """Shapes of the model `args` builds (on the meta device when the builders allow it: no memory)."""
    from main import build_model_main
    try:
        with torch.device("meta"):
            model = build_model_main(args)[0]
    except Exception:  # noqa: BLE001 - some builders compute on real tensors; build on the CPU then
        model = build_model_main(args)[0]
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


def convert(src: str, config: Optional[str], options: Sequence[str] = (), ema: bool = False
            ) -> Tuple[Dict[str, torch.Tensor], Optional[str], List[str]]:
    """(converted state dict, config used (None: not checked), lines describing the mapping)."""
    checkpoint = load_checkpoint(src, "input")
    state = checkpoint["model"]
    if ema:  # detrex saves its model EMA beside the model, as `ema_state`
        state = checkpoint.get("ema_state") or checkpoint.get("ema_model")
        if not isinstance(state, dict) or not state:
            raise ConvertError(f"{src} holds no EMA weights (no 'ema_state' / 'ema_model' entry); drop --ema")
    layout = detect_layout(state, checkpoint)
    lines = [f"{src}: {layout} layout, {len(state)} tensors"]
    if layout == "detrex":
        facts = detrex_facts(state)
        lines.append("detrex model: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
        config = config or find_config(facts)
        args = config_args(config, options)
        state, notes = detrex_to_project(state, args)
        lines += ["  " + n for n in notes]
    else:
        lines.append("  keys kept as they are (this project uses the original DINO's names)")
        if config is None:
            lines.append("  no config given (-c): shapes not checked")
            return state, None, lines
        args = config_args(config, options)
    check_fits(state, build_model_state(args), config)
    lines.append(f"fits {os.path.relpath(config)}: {len(state)} tensors")
    return state, config, lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  python tools/convert_checkpoint.py detrex.pth converted.pth\n"
                                            "  python tools/convert_checkpoint.py detrex.pth converted.pth "
                                            "-c config/detrex/dino_r50_4scale_12ep.py")
    parser.add_argument("input", help="checkpoint to convert (detrex, original DINO or this project)")
    parser.add_argument("output", help="file to write ({'model': state_dict, 'config': path})")
    parser.add_argument("-c", "--config", help="config the checkpoint belongs to (default: found from its keys)")
    parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, as main.py's --options (the model the weights are for)")
    parser.add_argument("--ema", action="store_true",
                        help="convert the EMA weights the file holds (detrex: 'ema_state') instead of 'model'")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    opt = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        if os.path.abspath(opt.input) == os.path.abspath(opt.output):
            raise ConvertError("OUT must differ from IN (the input is never overwritten)")
        if opt.config and not os.path.isfile(opt.config):
            raise ConvertError(f"config {opt.config} does not exist")
        if opt.options and not opt.config:
            raise ConvertError("--options needs the config they change (-c)")
        state, config, lines = convert(opt.input, opt.config, opt.options, opt.ema)
        print("\n".join(lines))
        used = os.path.relpath(config, ROOT) if config else None
        save_checkpoint_files({"model": state, "config": used, "options": opt.options}, [opt.output])
        print(f"wrote {opt.output}")
        return 0
    except (ConvertError, LayoutError, CheckpointError, ValueError, KeyError) as exc:
        if opt.debug:
            raise
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
