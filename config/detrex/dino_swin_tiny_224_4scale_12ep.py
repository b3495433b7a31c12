# detrex DINO-Swin-T-224-4scale, 12 epochs: 51.3 (IN1k) / 52.5 (IN22k to IN1k) box AP (detrex DINO model zoo).
# projects/dino/configs/dino-swin/dino_swin_tiny_224_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'swin_T_224_1k'
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = None
backbone_drop_path_rate = 0.1
