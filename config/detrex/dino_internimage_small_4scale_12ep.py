# detrex DINO-InternImage-Small-4scale, 12 epochs: 53.6 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-internimage/dino_internimage_small_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'internimage_S_1k'
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = None
backbone_drop_path_rate = 0.1
