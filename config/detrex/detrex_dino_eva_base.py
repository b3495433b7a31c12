# What detrex's DINO-EVA configs (projects/dino_eva) share beyond the plain-ViT rows: every batch
# padded to a square of the backbone's size with the padding masked, in training and evaluation
# alike, and large scale jitter (datasets/lsj.py) to that square.
_base_ = ['detrex_dino_vit_base.py']

pad_to_square = 1024
eval_mask_padding = True

data_aug_type = 'lsj'  # large scale jitter, datasets/lsj.py
lsj_size = 1024
lsj_min_scale = 0.1
lsj_max_scale = 2.0
lsj_pad = True  # pad crops to lsj_size x lsj_size
