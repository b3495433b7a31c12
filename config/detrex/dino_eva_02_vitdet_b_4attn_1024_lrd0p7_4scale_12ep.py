# DINO-EVA-02-B, LSJ 1024, 12 epochs: 55.8 box AP (detrex DINO-EVA model zoo).
# 4 global-attention blocks (2, 5, 8, 11), windows of 16, layer decay 0.7; backbone lr base 1e-4.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_B_pt_in21k_p14to16.pt (or backbone_dir=DIR).
_base_ = ['detrex_dino_eva_base.py']

# backbone: EVA-02 plain ViT + ViTDet simple feature pyramid (models/dino/backbones/eva.py)
backbone = 'eva02_base'
vit_rope_pt_grid = 16  # RoPE coordinates in units of the 16x16 pre-training grid

lr_layer_decay = 0.7
