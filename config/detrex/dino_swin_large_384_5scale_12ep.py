# detrex DINO-Swin-L-384-5scale, 12 epochs: 57.5 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-swin/dino_swin_large_384_5scale_12ep.py
_base_ = ['dino_swin_large_384_4scale_12ep.py']

return_interm_indices = [0, 1, 2, 3]
num_feature_levels = 5
