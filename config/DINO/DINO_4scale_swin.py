# DINO-4scale with Swin-L (IN-22k, 384, window 12), as the original's config of
# this name: 56.8 box AP at 12 epochs, 58.0 at 36 (original README).
# Pretrained file in backbone_dir: swin_large_patch4_window12_384_22k.pth
_base_ = ['DINO_4scale.py']

backbone = 'swin_L_384_22k'
use_checkpoint = True
