"""Backbone bodies, one module per family, found by name through the registry."""
from .registry import available_backbones, build_backbone_body, register_backbone

__all__ = ["available_backbones", "build_backbone_body", "register_backbone"]
