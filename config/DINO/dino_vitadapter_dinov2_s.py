# DINO-4scale with DINOv2 ViT-S in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter-S + DINOv2-S reports 51.5 box AP with Mask R-CNN 3x+MS at layer_decay_rate 0.70 (51.0 / 50.8 / 49.4 /
# 48.8 at 0.75 / 0.80 / 0.90 / 0.95); no DINO result is published. Layer decay 0.70 (from the B config).
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vits14_pretrain.pth (or its _14to16 file,
# or backbone_dir=DIR), or backbone_checkpoint=/path/to/mask_rcnn_dinov2_adapter_small_fpn_3x_coco.pth.
_base_ = ['dino_vitadapter_dinov2_b.py']

backbone = 'vitadapter_dinov2_small'
vit_drop_path_rate = 0.2
vit_adapter_deform_ratio = 1.0
