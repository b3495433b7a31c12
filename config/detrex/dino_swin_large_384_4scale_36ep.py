# detrex DINO-Swin-L-384-4scale, 36 epochs: 58.1 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-swin/dino_swin_large_384_4scale_36ep.py
_base_ = ['dino_swin_large_384_4scale_12ep.py']

epochs = 36
lr_drop = 30
