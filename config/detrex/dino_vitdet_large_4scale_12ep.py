# DINO-ViTDet-Large-4scale, MAE ViT-L, 12 epochs: 52.9 box AP (detrex DINO model zoo).
# Windows of 14 with global attention in blocks 5, 11, 17, 23, relative position biases;
# DINO's multi-scale DETR augmentation and a 0.1x backbone lr (lr_backbone), no layer decay.
# Pretrained weights: --options pretrained_backbone_path=/path/to/mae_pretrain_vit_large.pth (or backbone_dir=DIR).
_base_ = ['dino_vitdet_base_4scale_12ep.py']

backbone = 'vitdet_large'
vit_global_attn_indexes = [5, 11, 17, 23]
vit_drop_path_rate = 0.4
