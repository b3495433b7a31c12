# detrex DINO-Focal-Large-4scale (4 focal levels), 12 epochs: 58.0 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-focal/dino_focalnet_large_lrf_384_fl4_4scale_12ep.py
_base_ = ['dino_focalnet_large_lrf_384_4scale_12ep.py']

backbone = 'focalnet_L_384_22k_fl4'
focal_levels = 4
focal_windows = 3
focal_normalize_modulator = False  # detrex's fl4 configs do not normalize the modulator (the official fl4 does)
