# DINO-4scale with InternImage-S (IN-1k): 53.6 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: internimage_s_1k_224.pth
_base_ = ['DINO_4scale.py']

backbone = 'internimage_S_1k'
