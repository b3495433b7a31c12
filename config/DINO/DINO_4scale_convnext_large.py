# DINO-4scale with ConvNeXt-Large (IN-22k, fine-tuned on IN-1k at 384): 55.5 box AP at
# 12 epochs (detrex model zoo). Pretrained file in backbone_dir: convnext_large_22k_1k_384.pth
_base_ = ['DINO_4scale.py']

backbone = 'convnext_large_22k_384'
