# DINO-EVA-02-L, LSJ 1536, windows of 32, 12 epochs (detrex DINO-EVA configs; no released checkpoint).
# 8 global-attention blocks (2, 5, ..., 23), drop path 0.4, layer decay 0.8, activation checkpointing;
# 2e-4 base backbone lr as for the other EVA-02-L models.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_L_pt_m38m_p14to16.pt (or backbone_dir=DIR).
# projects/dino_eva/configs/dino-eva-02/dino_eva_02_vitdet_l_8attn_win32_1536_lrd0p8_4scale_12ep.py
_base_ = ['dino_eva_02_vitdet_l_8attn_1536_lrd0p8_4scale_12ep.py']

vit_window_size = 32
vit_drop_path_rate = 0.4
