# DINO-ViTDet-Base-4scale, MAE ViT-B, 50 epochs: 55.0 box AP (detrex DINO model zoo).
# Windows of 14 with global attention in blocks 2, 5, 8, 11, relative position biases;
# DINO's multi-scale DETR augmentation and a 0.1x backbone lr (lr_backbone), no layer decay.
# Pretrained weights: --options pretrained_backbone_path=/path/to/mae_pretrain_vit_base.pth (or backbone_dir=DIR).
_base_ = ['dino_vitdet_base_4scale_12ep.py']

epochs = 50
lr_drop = 40
