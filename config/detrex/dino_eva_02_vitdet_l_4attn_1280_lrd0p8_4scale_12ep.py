# DINO-EVA-02-L, LSJ 1280, 12 epochs: 59.8 box AP (detrex DINO-EVA model zoo).
# 4 global-attention blocks (5, 11, 17, 23), windows of 16, layer decay 0.8, activation checkpointing;
# 2e-4 base backbone lr as for the other EVA-02-L models (detrex's hacked trainer).
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_L_pt_m38m_p14to16.pt (or backbone_dir=DIR).
# projects/dino_eva/configs/dino-eva-02/dino_eva_02_vitdet_l_4attn_1280_lrd0p8_4scale_12ep.py
_base_ = ['dino_eva_02_vitdet_l_4attn_1024_lrd0p8_4scale_12ep.py']

use_checkpoint = True
vit_img_size = 1280
pad_to_square = 1280
lsj_size = 1280
