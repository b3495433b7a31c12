"""Backbone registry: `backbone` config name -> builder(args) -> body module.

A body maps an image batch [B, 3, H, W] to the list of feature maps selected by
`args.return_interm_indices` (highest resolution first) and has the attributes
`num_channels` and `strides` (one entry per returned map). See
docs/ARCHITECTURE.md.
"""
from typing import Callable, Dict, List

from torch import nn

BackboneBuilder = Callable[[object], nn.Module]
_BACKBONES: Dict[str, BackboneBuilder] = {}


def register_backbone(*names: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering a builder under one or more `backbone` names."""
    def wrap(builder: BackboneBuilder) -> BackboneBuilder:
        for name in names:
            if name in _BACKBONES:
                raise KeyError(f"backbone '{name}' is registered twice")
            _BACKBONES[name] = builder
        return builder
    return wrap


def available_backbones() -> List[str]:
    _import_all()
    return sorted(_BACKBONES)


def build_backbone_body(args) -> nn.Module:
    """Build the body named by `args.backbone`; unknown names list the known ones."""
    _import_all()
    name = args.backbone
    if name not in _BACKBONES:
        raise ValueError(f"backbone={name!r} is not known. Available: {', '.join(sorted(_BACKBONES))}")
    body = _BACKBONES[name](args)
    for attr in ("num_channels", "strides"):
        if len(getattr(body, attr)) != len(args.return_interm_indices):
            raise ValueError(f"backbone {name} returns {len(getattr(body, attr))} levels but "
                             f"return_interm_indices={args.return_interm_indices}")
    return body


def _import_all() -> None:
    """Import every module of this package so their @register_backbone run."""
    import importlib
    import pkgutil

    from models.dino import backbones
    for info in pkgutil.iter_modules(backbones.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"models.dino.backbones.{info.name}")


# --- checkpoint layouts -------------------------------------------------------
# Released checkpoints name a backbone's tensors in their own way (detrex /
# detectron2, timm, the authors' repositories). A family file registers, next to
# its builder, a function that maps one such layout onto its own keys:
#     @register_layout_remap("detrex", "swin_T_224_1k", ...)
#     def remap_detrex(state: StateDict, args) -> StateDict: ...
# `state` holds the checkpoint's backbone tensors with the layout's backbone
# prefix removed (detrex: "backbone."); the result is keyed as the body's own
# state_dict() (the module `backbone.0` of the detector).
LayoutRemap = Callable[[dict, object], dict]
_LAYOUT_REMAPS: Dict[str, Dict[str, LayoutRemap]] = {}


def register_layout_remap(layout: str, *names: str) -> Callable[[LayoutRemap], LayoutRemap]:
    """Decorator registering a key remap from checkpoint `layout` for backbone `names`."""
    def wrap(fn: LayoutRemap) -> LayoutRemap:
        table = _LAYOUT_REMAPS.setdefault(layout, {})
        for name in names:
            if name in table:
                raise KeyError(f"layout remap {layout!r} for backbone {name!r} is registered twice")
            table[name] = fn
        return fn
    return wrap


def get_layout_remap(layout: str, backbone_name: str) -> LayoutRemap:
    """The remap from `layout` for `backbone_name`; a ValueError naming what exists if none."""
    _import_all()
    table = _LAYOUT_REMAPS.get(layout, {})
    if backbone_name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ValueError(f"no {layout} checkpoint layout is known for backbone={backbone_name!r} "
                         f"(known for: {known})")
    return table[backbone_name]
