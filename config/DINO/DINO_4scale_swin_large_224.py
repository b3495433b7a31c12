# DINO-4scale with Swin-L (IN-22k, 224, window 7): 56.9 box AP at 12 epochs
# (detrex model zoo). Pretrained file in backbone_dir: swin_large_patch4_window7_224_22k.pth
_base_ = ['DINO_4scale.py']

backbone = 'swin_L_224_22k'
use_checkpoint = True
