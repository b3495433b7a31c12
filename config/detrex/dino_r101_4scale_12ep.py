# detrex DINO-R101-4scale, 12 epochs: 50.0 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-resnet/dino_r101_4scale_12ep.py
_base_ = ['dino_r50_4scale_12ep.py']

backbone = 'resnet101'
