# detrex DINO-ConvNeXt-Base-384-4scale, 12 epochs: 55.1 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-convnext/dino_convnext_base_384_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'convnext_base_22k_384'
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = None
backbone_drop_path_rate = 0.0
