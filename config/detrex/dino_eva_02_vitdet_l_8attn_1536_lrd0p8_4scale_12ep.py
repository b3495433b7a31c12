# DINO-EVA-02-L, LSJ 1536, 12 epochs: 61.6 box AP (detrex DINO-EVA model zoo).
# 8 global-attention blocks (2, 5, ..., 23), windows of 16, layer decay 0.8, activation checkpointing;
# 2e-4 base backbone lr as for the other EVA-02-L model.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_L_m38m_to_o365 backbone (Objects365 fine-tuned; only its backbone is loaded) (or backbone_dir=DIR).
_base_ = ['dino_eva_02_vitdet_l_4attn_1024_lrd0p8_4scale_12ep.py']

use_checkpoint = True
vit_img_size = 1536
pad_to_square = 1536
vit_global_attn_indexes = [2, 5, 8, 11, 14, 17, 20, 23]
vit_drop_path_rate = 0.3
lsj_size = 1536
