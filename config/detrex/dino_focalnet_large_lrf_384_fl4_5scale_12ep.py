# detrex DINO-Focal-Large-5scale (4 focal levels), 12 epochs: 58.5 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-focal/dino_focalnet_large_lrf_384_fl4_5scale_12ep.py
_base_ = ['dino_focalnet_large_lrf_384_fl4_4scale_12ep.py']

return_interm_indices = [0, 1, 2, 3]
num_feature_levels = 5
