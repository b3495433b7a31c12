# DINO-4scale with InternImage-B (IN-1k): 54.7 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: internimage_b_1k_224.pth
_base_ = ['DINO_4scale.py']

backbone = 'internimage_B_1k'
