# DINO-4scale with DINOv2 ViT-g in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter has no published DINOv2-g setting: windows, interaction groups (4 x 10 blocks), drop path 0.4
# and layer decay 0.8 are extrapolated from the L setting; no result is published.
# Patch-16 trunk: convert the patch-14 file first (python tools/convert_14to16.py dinov2_vitg14_pretrain.pth) or let the loader resample.
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vitg14_pretrain_14to16.pth (or backbone_dir=DIR).
_base_ = ['dino_vitadapter_dinov2_b.py']

backbone = 'vitadapter_dinov2_giant'
vit_global_attn_indexes = [9, 19, 29, 39]
vit_drop_path_rate = 0.4
lr_layer_decay = 0.8
