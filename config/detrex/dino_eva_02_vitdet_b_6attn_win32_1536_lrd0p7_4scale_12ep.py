# DINO-EVA-02-B, LSJ 1536, 12 epochs: 58.1 box AP (detrex DINO-EVA model zoo).
# 6 global-attention blocks (1, 3, ..., 11), windows of 32, layer decay 0.7; backbone lr base 1e-4.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_B_pt_in21k_p14to16.pt (or backbone_dir=DIR).
_base_ = ['dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py']

vit_img_size = 1536
pad_to_square = 1536
vit_window_size = 32
vit_global_attn_indexes = [1, 3, 5, 7, 9, 11]
lsj_size = 1536
