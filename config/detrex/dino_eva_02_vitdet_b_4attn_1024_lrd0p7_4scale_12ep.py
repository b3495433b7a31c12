# DINO-EVA-02-B, LSJ 1024, 12 epochs: 55.8 box AP (detrex DINO-EVA model zoo).
# 4 global-attention blocks (2, 5, 8, 11), windows of 16, layer decay 0.7; backbone lr base 1e-4.
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva02_B_pt_in21k_p14to16.pt (or backbone_dir=DIR).
_base_ = ['detrex_dino_base.py']

# detrex projects/dino_eva: every batch padded to a square of the backbone's size and the padding
# masked, in training and evaluation alike
pad_to_square = 1024
eval_mask_padding = True

# backbone: EVA-02 plain ViT + ViTDet simple feature pyramid (models/dino/backbones/eva.py)
backbone = 'eva02_base'
return_interm_indices = [1, 2, 3, 4]  # pyramid levels, strides 8/16/32/64
num_feature_levels = 4
backbone_freeze_keywords = None
use_checkpoint = False  # activation checkpointing of the ViT blocks
vit_img_size = 1024  # square input the rel-pos tables / global RoPE spacing are set for
vit_pretrain_img_size = 224  # image size of the pretrained position embedding
vit_patch_size = 16
vit_window_size = 16
vit_global_attn_indexes = [2, 5, 8, 11]  # blocks with global attention, the rest windowed
vit_drop_path_rate = 0.1
vit_out_channels = 256  # simple feature pyramid width
vit_rope_pt_grid = 16  # RoPE coordinates in units of the 16x16 pre-training grid
vit_freeze_patch_embed = False
vit_patch_resample = 'bicubic'  # how a patch-14 kernel is resized to 16 on loading
vit_depth = None  # None: the full trunk (tests use fewer blocks)

# optimisation (detrex: AdamW, lr 1e-4, weight decay 1e-4 on every parameter, grad clip 0.1)
lr = 0.0001
lr_backbone = 1e-05  # used only when lr_layer_decay is None
weight_decay = 0.0001
lr_layer_decay = 0.7  # lr of block i = base * decay ** (L + 1 - (i + 1)); util/layer_decay.py
lr_layer_decay_num_layers = None  # L; None: the trunk depth
lr_layer_decay_backbone_lr = None  # base of the decayed backbone lr; None: lr
lr_layer_decay_wd_policy = 'none'  # 'none' | 'vitdet' | 'beit' (weight-decay exemptions in the backbone)
epochs = 12
lr_drop = 11
clip_max_norm = 0.1

# data
data_aug_type = 'lsj'  # large scale jitter, datasets/lsj.py
lsj_size = 1024
lsj_min_scale = 0.1
lsj_max_scale = 2.0
lsj_pad = True  # pad crops to lsj_size x lsj_size
