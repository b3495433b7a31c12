# DINO-4scale with InternImage-L (IN-22k): 57.0 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: internimage_l_22k_192to384.pth
_base_ = ['DINO_4scale.py']

backbone = 'internimage_L_22k'
