# DINO-4scale, ResNet-50, COCO (49.0 box AP at 12 epochs in the paper's Table 1).
# Keys and values are those of the original DINO config, so its checkpoints and
# commands work unchanged. Keys marked "fixed" are accepted only at the value
# shown (the original carried them for experiments that DINO does not use).
_base_ = ['coco_transformer.py']

num_classes = 'auto'        # set from the data: largest category id + 1 (91 on COCO, whose ids go up to 90);
                            # a number here or in --options wins and is checked against the data

# optimisation
lr = 0.0001
param_dict_type = 'default'
lr_backbone = 1e-05
lr_backbone_names = ['backbone.0']
lr_linear_proj_names = ['reference_points', 'sampling_offsets']
lr_linear_proj_mult = 0.1
ddetr_lr_param = False
batch_size = 2
weight_decay = 0.0001
epochs = 12
lr_drop = 11
save_checkpoint_interval = 1
clip_max_norm = 0.1
onecyclelr = False
multi_step_lr = False
lr_drop_list = [33, 45]

# model
modelname = 'dino'
frozen_weights = None       # fixed
backbone = 'resnet50'
backbone_pretrained = True      # ImageNet weights: a local file (pretrained_backbone_path / backbone_dir), else torchvision's download
use_checkpoint = False

dilation = False
position_embedding = 'sine'
pe_temperatureH = 20
pe_temperatureW = 20
return_interm_indices = [1, 2, 3]
backbone_freeze_keywords = None
enc_layers = 6
dec_layers = 6
unic_layers = 0             # fixed
pre_norm = False            # fixed
dim_feedforward = 2048
hidden_dim = 256
dropout = 0.0
nheads = 8
num_queries = 900
query_dim = 4               # fixed
num_patterns = 0            # fixed
pdetr3_bbox_embed_diff_each_layer = False  # fixed
pdetr3_refHW = -1           # fixed
random_refpoints_xy = False  # fixed
fix_refpoints_hw = -1       # fixed
dabdetr_yolo_like_anchor_update = False  # fixed
dabdetr_deformable_encoder = False       # fixed
dabdetr_deformable_decoder = False       # fixed
use_deformable_box_attn = False          # fixed
box_attn_type = 'roi_align'              # fixed
dec_layer_number = None     # fixed
num_feature_levels = 4
enc_n_points = 4
dec_n_points = 4
decoder_layer_noise = False  # fixed
dln_xy_noise = 0.2
dln_hw_noise = 0.2
add_channel_attention = False  # fixed
add_pos_value = False          # fixed
two_stage_type = 'standard'    # fixed
two_stage_pat_embed = 0        # fixed
two_stage_add_query_num = 0    # fixed
two_stage_bbox_embed_share = False
two_stage_class_embed_share = False
two_stage_learn_wh = False
two_stage_default_hw = 0.05
two_stage_keep_all_tokens = False  # fixed
num_select = 300
transformer_activation = 'relu'
batch_norm_type = 'FrozenBatchNorm2d'
masks = False               # fixed (no segmentation head)
aux_loss = True
set_cost_class = 2.0
set_cost_bbox = 5.0
set_cost_giou = 2.0
cls_loss_coef = 1.0
mask_loss_coef = 1.0
dice_loss_coef = 1.0
bbox_loss_coef = 5.0
giou_loss_coef = 2.0
enc_loss_coef = 1.0
interm_loss_coef = 1.0
no_interm_box_loss = False
focal_alpha = 0.25

decoder_sa_type = 'sa'      # fixed
matcher_type = 'HungarianMatcher'
decoder_module_seq = ['sa', 'ca', 'ffn']
nms_iou_threshold = -1

dec_pred_bbox_embed_share = True
dec_pred_class_embed_share = True

# contrastive denoising
use_dn = True
dn_number = 100
dn_box_noise_scale = 0.4
dn_label_noise_ratio = 0.5
embed_init_tgt = True
dn_labelbook_size = 'auto'  # label_enc has dn_labelbook_size + 1 rows; must be >= num_classes ('auto': equal)

match_unstable_error = True

# exponential moving average of the weights
use_ema = False
ema_decay = 0.9997
ema_epoch = 0

use_detached_boxes_dec_out = False
