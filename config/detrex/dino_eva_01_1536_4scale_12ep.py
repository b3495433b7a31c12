# DINO-EVA-01 (ViT-g, 40 blocks), LSJ 1536, 12 epochs (detrex DINO-EVA configs; no released
# checkpoint): the LSJ-1280 model on 1536 squares. Its relative-position tables keep the 1280 size
# (80 tokens a side) and global blocks resize them with BEiT's spline (detrex's interp_type='beit',
# "slightly AP improvement at a higher res, e.g. 1280 training -> 1536 eval"). As in detrex, no gradient
# reaches those tables through the resize: a distributed training run needs --find_unused_params.
# Recipe as the 1280 config (layer decay 0.9 over 40 blocks, 12 epochs).
# Pretrained weights: --options pretrained_backbone_path=/path/to/eva_o365.pth (or backbone_dir=DIR).
# projects/dino_eva/configs/dino-eva-01/dino_eva_01_1536_4scale_12ep.py
_base_ = ['dino_eva_01_1280_4scale_12ep.py']

pad_to_square = 1536
lsj_size = 1536
vit_img_size = 1280  # only the size of the relative-position tables
vit_rel_pos_interp = 'beit'
