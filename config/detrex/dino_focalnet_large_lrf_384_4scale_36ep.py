# detrex DINO-Focal-Large-4scale (3 focal levels), 36 epochs: 58.3 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-focal/dino_focalnet_large_lrf_384_4scale_36ep.py
_base_ = ['dino_focalnet_large_lrf_384_4scale_12ep.py']

epochs = 36
lr_drop = 30
