# What detrex's plain-ViT DINO configs (ViTDet, EVA-01, EVA-02) share: the ViTDet simple
# feature pyramid at strides 8/16/32/64, the trunk's defaults, and detrex's optimisation
# (AdamW, lr 1e-4, weight decay 1e-4, grad clip 0.1, 12 epochs). Each row states only what differs.
_base_ = ['detrex_dino_base.py']

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
vit_freeze_patch_embed = False
vit_patch_resample = 'bicubic'  # how a patch-14 kernel is resized to 16 on loading
vit_depth = None  # None: the full trunk (tests use fewer blocks)

lr = 0.0001
lr_backbone = 1e-05  # used only when lr_layer_decay is None
weight_decay = 0.0001
lr_layer_decay = None  # lr of block i = base * decay ** (L + 1 - (i + 1)); util/layer_decay.py
lr_layer_decay_num_layers = None  # L; None: the trunk depth
lr_layer_decay_backbone_lr = None  # base of the decayed backbone lr; None: lr
lr_layer_decay_wd_policy = 'none'  # 'none' | 'vitdet' | 'beit' (weight-decay exemptions in the backbone)
epochs = 12
lr_drop = 11
clip_max_norm = 0.1
