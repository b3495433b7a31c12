# DINO-4scale with Swin-S (IN-1k, 224): 53.0 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: swin_small_patch4_window7_224.pth
_base_ = ['DINO_4scale.py']

backbone = 'swin_S_224_1k'
