from .dino import DINO, build_dino  # noqa: F401  (registers 'dino')
