# DINO-4scale with ConvNeXt-XL (IN-22k, 224), as the original's config of this name.
# Pretrained file in backbone_dir: convnext_xlarge_22k_224.pth
_base_ = ['DINO_4scale.py']

backbone = 'convnext_xlarge_22k'
