# DINO-5scale with Swin-L (IN-22k, 384): 57.3 box AP at 12 epochs, 58.5 at 36
# (original README). Adds the stride-4 level (Swin stage 0).
# Pretrained file in backbone_dir: swin_large_patch4_window12_384_22k.pth
_base_ = ['DINO_5scale.py']

backbone = 'swin_L_384_22k'
use_checkpoint = True
