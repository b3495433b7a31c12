# Data augmentation of the COCO training recipe (shared by the DINO configs).
# Train: random flip, then either a random resize (shorter side from
# data_aug_scales, longer side capped at data_aug_max_size) or a resize to
# data_aug_scales2_resize + random crop in data_aug_scales2_crop + the random
# resize. Val: resize to max(data_aug_scales).
data_aug_scales = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
data_aug_max_size = 1333
data_aug_scales2_resize = [400, 500, 600]
data_aug_scales2_crop = [384, 600]

# Multiplies every size above when set (e.g. 0.5 for quick experiments).
data_aug_scale_overlap = None

# 'detr' (above) or 'lsj' (large scale jitter with a fixed-size crop, for the
# plain-ViT configs; see datasets/lsj.py).
data_aug_type = 'detr'
