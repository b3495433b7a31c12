# DINO-4scale with Swin-B (IN-22k->1k, 384, window 12): 55.8 box AP at 12 epochs
# (detrex model zoo). Pretrained file in backbone_dir: swin_base_patch4_window12_384.pth
_base_ = ['DINO_4scale.py']

backbone = 'swin_B_384_22k'
use_checkpoint = True
