# DINO-4scale with ConvNeXt-Small (IN-22k, fine-tuned on IN-1k at 384): 54.2 box AP at
# 12 epochs (detrex model zoo). Pretrained file in backbone_dir: convnext_small_22k_1k_384.pth
_base_ = ['DINO_4scale.py']

backbone = 'convnext_small_22k_384'
