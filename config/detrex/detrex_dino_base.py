# Shared base of the detrex-compatible DINO configs (config/detrex/*.py, named as
# detrex's projects/dino and projects/dino_eva configs). A detrex checkpoint,
# converted on load or by tools/convert_checkpoint.py, computes here what it
# computes in detrex. What differs from the original DINO configs:
_base_ = ['../DINO/DINO_4scale.py']

# detrex's DINO model (projects/dino/configs/models/dino_r50.py)
pe_temperatureH = 10000          # PositionEmbeddingSine(temperature=10000, offset=-0.5)
pe_temperatureW = 10000
pe_offset = -0.5
num_classes = 80                 # contiguous 0..79 for the sorted category ids
contiguous_category_ids = True   # datasets map category ids to 0..K-1, evaluation maps them back
dn_labelbook_size = 80
label_enc_extra_row = False      # label_enc: nn.Embedding(num_classes, 256)
dec_pred_class_embed_share = False   # 6 independent decoder heads ...
dec_pred_bbox_embed_share = False
enc_heads_in_decoder_list = True     # ... and a 7th for the encoder proposals (class_embed.6 / bbox_embed.6)
dn_box_noise_scale = 1.0
dn_label_noise_ratio = 0.5
dn_number = 100
num_select = 300                 # select_box_nums_for_evaluation
postprocess_clip_boxes = True    # detectron2's detector_postprocess: clip to the image, drop empty boxes
eval_mask_padding = False        # projects/dino: the eval padding mask is all False

# detrex's training recipe (AdamW lr 1e-4, wd 1e-4, backbone lr x 0.1, grad clip 0.1,
# total batch 16; 90k iterations = 12 epochs, lr x 0.1 at epoch 11)
lr = 0.0001
lr_backbone = 1e-05
weight_decay = 0.0001
clip_max_norm = 0.1
batch_size = 2                   # per GPU; 8 GPUs give detrex's total batch of 16
epochs = 12
lr_drop = 11
