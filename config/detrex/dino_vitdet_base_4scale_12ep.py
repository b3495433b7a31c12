# DINO-ViTDet-Base-4scale, MAE ViT-B, 12 epochs: 50.2 box AP (detrex DINO model zoo).
# Windows of 14 with global attention in blocks 2, 5, 8, 11, relative position biases;
# DINO's multi-scale DETR augmentation and a 0.1x backbone lr (lr_backbone), no layer decay.
# Pretrained weights: --options pretrained_backbone_path=/path/to/mae_pretrain_vit_base.pth (or backbone_dir=DIR).
_base_ = ['detrex_dino_vit_base.py']
# detrex projects/dino: no square padding (its preprocess ignores the pyramid's square_pad) and an
# all-False padding mask in evaluation (detrex_dino_base.py)

# backbone: MAE plain ViT + ViTDet simple feature pyramid (models/dino/backbones/vitdet.py)
backbone = 'vitdet_base'
vit_window_size = 14
vit_use_rel_pos = True  # ViTDet decomposed relative position biases
vit_pad_input = False  # detectron2's ViT gets the batch as padded by detrex (no multiple-of-32 padding)

data_aug_type = 'detr'  # the DINO / DETR multi-scale recipe
