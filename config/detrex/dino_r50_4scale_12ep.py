# detrex DINO-R50-4scale, 12 epochs: 49.2 box AP (detrex model zoo; 49.4 with EMA or the hacked trainer).
# projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'resnet50'            # detectron2 ResNet (stride in the 3x3 conv, FrozenBN) = torchvision's
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = ['body.conv1', 'body.bn1']   # detectron2 freeze_at=1: only the stem is frozen
