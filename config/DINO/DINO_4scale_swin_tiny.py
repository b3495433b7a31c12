# DINO-4scale with Swin-T (IN-1k, 224): 51.3 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: swin_tiny_patch4_window7_224.pth
# (backbone='swin_T_224_22k' takes the IN-22k->1k model instead: 52.5 in detrex).
_base_ = ['DINO_4scale.py']

backbone = 'swin_T_224_1k'
