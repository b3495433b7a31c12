# DINO-EVA-01 (ViT-g, 40 blocks), LSJ 1280, 12 epochs: 62.1 box AP (detrex DINO-EVA model zoo).
# Global attention every 4th block, windows of 16, relative position biases, frozen patch embedding,
# layer decay 0.9 over 40 blocks, backbone lr base 1e-4, activation checkpointing.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva_o365.pth (EVA-01 Objects365 detector; its backbone is loaded) (or backbone_dir=DIR).
_base_ = ['detrex_dino_eva_base.py']

pad_to_square = 1280
lsj_size = 1280

# backbone: EVA-01 giant plain ViT + ViTDet simple feature pyramid (models/dino/backbones/eva.py)
backbone = 'eva01_giant'
use_checkpoint = True
vit_img_size = 1280
vit_global_attn_indexes = [3, 7, 11, 15, 19, 23, 27, 31, 35, 39]
vit_drop_path_rate = 0.6
vit_use_rel_pos = True  # ViTDet decomposed relative position biases
vit_freeze_patch_embed = True

lr_layer_decay = 0.9
