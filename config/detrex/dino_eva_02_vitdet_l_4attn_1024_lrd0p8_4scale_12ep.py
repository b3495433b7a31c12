# DINO-EVA-02-L, LSJ 1024, 12 epochs: 58.9 box AP (detrex DINO-EVA model zoo).
# 4 global-attention blocks (5, 11, 17, 23), windows of 16, layer decay 0.8; the EVA-02-L models were
# trained with a 2e-4 backbone lr (detrex's note), used here as the base of the decayed backbone lr.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_L_pt_m38m_p14to16.pt (or backbone_dir=DIR).
_base_ = ['dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py']

backbone = 'eva02_large'
vit_global_attn_indexes = [5, 11, 17, 23]
vit_drop_path_rate = 0.4
lr_layer_decay = 0.8
lr_layer_decay_backbone_lr = 0.0002
