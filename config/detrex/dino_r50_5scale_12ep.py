# detrex DINO-R50-5scale, 12 epochs: 49.6 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-resnet/dino_r50_5scale_12ep.py
_base_ = ['dino_r50_4scale_12ep.py']

return_interm_indices = [0, 1, 2, 3]   # res2-res5 + one extra conv
num_feature_levels = 5
