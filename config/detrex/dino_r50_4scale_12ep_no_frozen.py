# detrex DINO-R50-4scale without a frozen stem, 12 epochs (detrex DINO configs; no released
# checkpoint). detectron2's freeze_at=-1: every ResNet convolution trains (batch norms stay frozen,
# FrozenBN as in every detrex ResNet); the model computes the same as dino_r50_4scale_12ep.
# projects/dino/configs/dino-resnet/dino_r50_4scale_12ep_no_frozen.py
_base_ = ['dino_r50_4scale_12ep.py']

backbone_freeze_keywords = []  # nothing frozen (None would be the original DINO's stem + layer1)
