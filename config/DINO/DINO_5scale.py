# DINO-5scale, ResNet-50, COCO (49.4 box AP at 12 epochs in the paper's Table 1):
# the 4-scale model plus the stride-4 level (layer1 of the ResNet).
_base_ = ['DINO_4scale.py']

batch_size = 1
return_interm_indices = [0, 1, 2, 3]
num_feature_levels = 5
