# DINO-4scale with DINOv2 ViT-g in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter has no published DINOv2-g setting: windows, interaction groups (4 x 10 blocks) and drop path 0.4
# are extrapolated from the L setting, layer decay 0.70 from the B config; no result is published.
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vitg14_pretrain.pth (or its _14to16 file,
# or backbone_dir=DIR).
_base_ = ['dino_vitadapter_dinov2_b.py']

backbone = 'vitadapter_dinov2_giant'
vit_global_attn_indexes = [9, 19, 29, 39]
vit_drop_path_rate = 0.4
