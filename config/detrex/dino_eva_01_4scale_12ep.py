# DINO-EVA-01 (ViT-g, 40 blocks) trained in detrex's projects/dino with DETR-like augmentation,
# 12 epochs: 59.1 box AP (detrex DINO model zoo, "Pretrained DINO with EVA Backbone"; the
# DINO-EVA README links it). Its model is the LSJ-1280 one's; what differs is projects/dino's:
# no square padding (images padded to the batch's largest only; the pyramid's square_pad=1280 is
# ignored there), an all-False padding mask in evaluation, DINO's multi-scale DETR augmentation.
# Recipe as detrex's config: AdamW lr 1e-4, wd 1e-4, layer decay 0.9 over 40 blocks, grad clip 0.1,
# total batch 16, 12 epochs. Pretrained weights: --options pretrained_backbone_path=/path/to/eva_o365.pth.
# projects/dino/configs/dino-eva-01/dino_eva_01_4scale_12ep.py
_base_ = ['dino_eva_01_1280_4scale_12ep.py']

pad_to_square = 0
eval_mask_padding = False
vit_pad_input = False  # detectron2's ViT gets the batch as padded by detrex (no multiple-of-32 padding)

data_aug_type = 'detr'  # the DINO / DETR multi-scale recipe, not LSJ
