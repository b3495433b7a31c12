# DINO-4scale with DINOv2 ViT-L in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter-L + DINOv2-L reports 55.3 box AP with Mask R-CNN 3x+MS (layer_decay_rate 0.8); no DINO result is published.
# Patch-16 trunk: convert the patch-14 file first (python tools/convert_14to16.py dinov2_vitl14_pretrain.pth) or let the loader resample.
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vitl14_pretrain_14to16.pth (or backbone_dir=DIR).
_base_ = ['dino_vitadapter_dinov2_b.py']

backbone = 'vitadapter_dinov2_large'
vit_global_attn_indexes = [5, 11, 17, 23]
vit_drop_path_rate = 0.4
lr_layer_decay = 0.8
