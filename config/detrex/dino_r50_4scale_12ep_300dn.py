# detrex DINO-R50-4scale, 300 denoising queries, 12 epochs: 49.5 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-resnet/dino_r50_4scale_12ep_300dn.py
_base_ = ['dino_r50_4scale_12ep.py']

dn_number = 300
