# DINO-4scale with DINOv2 ViT-L in a ViT-Adapter (models/dino/backbones/vit_adapter.py).
# ViT-Adapter-L + DINOv2-L reports 55.3 box AP with Mask R-CNN 3x+MS (its config: layer_decay_rate 0.65, and
# mean = std = 127.5 normalization); no DINO result is published. Layer decay 0.70 (from the B config).
# Pretrained weights: --options pretrained_backbone_path=/path/to/dinov2_vitl14_pretrain.pth (or its _14to16 file,
# or backbone_dir=DIR), or backbone_checkpoint=/path/to/mask_rcnn_dinov2_adapter_large_fpn_3x_coco.pth.
_base_ = ['dino_vitadapter_dinov2_b.py']

backbone = 'vitadapter_dinov2_large'
vit_global_attn_indexes = [5, 11, 17, 23]
vit_drop_path_rate = 0.4
