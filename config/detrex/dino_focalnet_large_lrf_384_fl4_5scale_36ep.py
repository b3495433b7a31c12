# detrex DINO-Focal-Large-5scale (FocalNet-L LRF, 4 focal levels), 36 epochs (detrex DINO configs;
# no released checkpoint): the 12-epoch 5-scale model with a larger drop path (0.4) for the longer run.
# projects/dino/configs/dino-focal/dino_focalnet_large_lrf_384_fl4_5scale_36ep.py
_base_ = ['dino_focalnet_large_lrf_384_fl4_5scale_12ep.py']

backbone_drop_path_rate = 0.4
epochs = 36
lr_drop = 30
