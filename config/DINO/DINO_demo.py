# A small DINO that learns on a 2-core CPU in minutes, from random weights and
# with nothing to download: the demo of scripts/demo.sh on the synthetic shapes
# dataset of tools/make_synthetic_coco.py. Same model and code paths as
# DINO-4scale (deformable attention, two-stage query selection, contrastive
# denoising, look-forward-twice); only sizes differ.
_base_ = ['DINO_4scale.py']

# num_classes / dn_labelbook_size: 'auto' (DINO_4scale.py), 6 for the synthetic shapes' ids 1..5

# ResNet-18 trained from scratch: ordinary batch norm, nothing frozen; cut after layer3
# (strides 8 and 16; two extra stride-2 convs give the levels at 32 and 64): on these
# 128-160 pixel images layer4 is a 4x5 map, and without it a step takes ~0.8x the time
# and the demo ends as high (docs/TRAINING.md, "The demo's recipe")
backbone = 'resnet18'
return_interm_indices = [1, 2]
backbone_pretrained = False
batch_norm_type = 'BatchNorm2d'
backbone_freeze_keywords = []

hidden_dim = 128
dim_feedforward = 256
nheads = 4
enc_layers = 2
dec_layers = 3
num_queries = 50
num_select = 50
dn_number = 10

# twice the lr of the first demo recipe (2e-4, 10 epochs, drop after 8): it reaches that recipe's AP50 in
# 7 epochs and ends higher after 8 (docs/TRAINING.md, "The demo's recipe"); 6e-4 and above learned slower
lr = 4e-4
lr_backbone = 4e-4
batch_size = 4
epochs = 8
lr_drop = 6
save_checkpoint_interval = 100

data_aug_scales = [112, 128]
data_aug_max_size = 160
data_aug_scales2_resize = [112, 128]
data_aug_scales2_crop = [96, 128]
