# DINO-4scale with DINOv2 ViT-B in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter-B + DINOv2-B reports 54.1 box AP with Mask R-CNN 3x+MS (its config: layer_decay_rate 0.60); no DINO
# result is published. Layer decay here: 0.70, the best rate of ViT-Adapter's DINOv2 table (measured for S).
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vitb14_pretrain.pth (patch 14, resampled
# to 16 on loading as tools/convert_14to16.py does; the _14to16 file works too), or backbone_dir=DIR, or
# backbone_checkpoint=/path/to/mask_rcnn_dinov2_adapter_base_fpn_3x_coco.pth (the COCO-trained trunk + adapter).
_base_ = ['DINO_4scale.py']

# backbone (return_interm_indices index the adapter maps at strides 4/8/16/32; DINO adds stride 64)
backbone = 'vitadapter_dinov2_base'
return_interm_indices = [1, 2, 3]  # pyramid levels, strides 8/16/32
num_feature_levels = 4
backbone_freeze_keywords = None
use_checkpoint = False  # activation checkpointing of the ViT blocks
vit_pretrain_img_size = 592  # image size of the pretrained position embedding
vit_patch_size = 16
vit_window_size = 14
vit_global_attn_indexes = [2, 5, 8, 11]  # blocks with global attention, the rest windowed
vit_drop_path_rate = 0.3
vit_freeze_patch_embed = False
vit_patch_resample = 'bilinear'  # how a patch-14 kernel is resized to 16 on loading
vit_depth = None  # None: the full trunk (tests use fewer blocks)
vit_adapter_conv_inplane = 64  # spatial prior module width
vit_adapter_n_points = 4
vit_adapter_deform_ratio = 0.5  # value channels of the deformable attention / ViT width
vit_adapter_cffn_ratio = 0.25
vit_adapter_init_values = 0.0  # injector gamma init
vit_adapter_interaction_indexes = None  # None: 4 equal groups of blocks
vit_adapter_norm = 'SyncBN'  # 'SyncBN' (as published) or 'BN'

# optimisation (ViT-Adapter: AdamW, lr 1e-4, weight decay 0.05, layer decay; no wd on 1-D params)
lr = 0.0001
lr_backbone = 1e-05  # used only when lr_layer_decay is None
weight_decay = 0.05
lr_layer_decay = 0.7  # ViT-Adapter's table: 0.70 best for DINOv2-S; lr of block i = base * decay ** (L + 1 - (i + 1)); util/layer_decay.py
lr_layer_decay_num_layers = None  # L; None: the trunk depth
lr_layer_decay_backbone_lr = None  # base of the decayed backbone lr; None: lr
lr_layer_decay_wd_policy = 'beit'  # 'none' | 'vitdet' | 'beit' (weight-decay exemptions in the backbone)
epochs = 12
lr_drop = 11
clip_max_norm = 0.1

# data
data_aug_type = 'detr'  # the DINO / DETR multi-scale recipe
