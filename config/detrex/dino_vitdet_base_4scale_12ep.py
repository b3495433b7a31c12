# DINO-ViTDet-Base-4scale, MAE ViT-B, 12 epochs: 50.2 box AP (detrex DINO model zoo).
# Windows of 14 with global attention in blocks 2, 5, 8, 11, relative position biases;
# DINO's multi-scale DETR augmentation and a 0.1x backbone lr (lr_backbone), no layer decay.
# Pretrained weights: --options pretrained_backbone_path=/path/to/mae_pretrain_vit_base.pth (or backbone_dir=DIR).
_base_ = ['detrex_dino_base.py']
# detrex projects/dino: no square padding (its preprocess ignores the pyramid's square_pad) and an
# all-False padding mask in evaluation (detrex_dino_base.py)

# backbone: MAE plain ViT + ViTDet simple feature pyramid (models/dino/backbones/vitdet.py)
backbone = 'vitdet_base'
return_interm_indices = [1, 2, 3, 4]  # pyramid levels, strides 8/16/32/64
num_feature_levels = 4
backbone_freeze_keywords = None
use_checkpoint = False  # activation checkpointing of the ViT blocks
vit_img_size = 1024  # square input the rel-pos tables / global RoPE spacing are set for
vit_pretrain_img_size = 224  # image size of the pretrained position embedding
vit_patch_size = 16
vit_window_size = 14
vit_global_attn_indexes = [2, 5, 8, 11]  # blocks with global attention, the rest windowed
vit_drop_path_rate = 0.1
vit_out_channels = 256  # simple feature pyramid width
vit_use_rel_pos = True  # ViTDet decomposed relative position biases
vit_freeze_patch_embed = False
vit_patch_resample = 'bicubic'  # how a patch-14 kernel is resized to 16 on loading
vit_depth = None  # None: the full trunk (tests use fewer blocks)
vit_pad_input = False  # detectron2's ViT gets the batch as padded by detrex (no multiple-of-32 padding)

# optimisation (detrex: AdamW, lr 1e-4, backbone 1e-5, weight decay 1e-4, grad clip 0.1)
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

# data
data_aug_type = 'detr'  # the DINO / DETR multi-scale recipe
