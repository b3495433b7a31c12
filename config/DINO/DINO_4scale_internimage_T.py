# DINO-4scale with InternImage-T (IN-1k): 52.3 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: internimage_t_1k_224.pth
_base_ = ['DINO_4scale.py']

backbone = 'internimage_T_1k'
