# DINO-4scale with ConvNeXt-Tiny (IN-22k, fine-tuned on IN-1k at 384): 52.4 box AP at
# 12 epochs (detrex model zoo). Pretrained file in backbone_dir: convnext_tiny_22k_1k_384.pth
_base_ = ['DINO_4scale.py']

backbone = 'convnext_tiny_22k_384'
