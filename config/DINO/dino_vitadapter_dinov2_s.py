# DINO-4scale with DINOv2 ViT-S in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter-S + DINOv2-S reports 51.5 box AP with Mask R-CNN 3x+MS (layer_decay_rate 0.7); no DINO result is published.
# Patch-16 trunk: convert the patch-14 file first (python tools/convert_14to16.py dinov2_vits14_pretrain.pth) or let the loader resample.
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vits14_pretrain_14to16.pth (or backbone_dir=DIR).
_base_ = ['dino_vitadapter_dinov2_b.py']

backbone = 'vitadapter_dinov2_small'
vit_drop_path_rate = 0.2
vit_adapter_deform_ratio = 1.0
