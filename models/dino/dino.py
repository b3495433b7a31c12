"""The DINO detector head: input projections, denoising queries, prediction
heads around the deformable transformer, and `build_dino`."""
import copy
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util.misc import NestedTensor, inverse_sigmoid, nested_tensor_from_tensor_list

from ..registry import MODULE_BUILD_FUNCS
from .backbone import build_backbone, downsample_mask
from .config_checks import check_model_config
from .criterion import SetCriterion
from .deformable_transformer import DeformableTransformer, build_deformable_transformer
from .dn_components import prepare_for_cdn, split_denoising_outputs
from .fused_linear import linear
from .matcher import build_matcher
from .postprocess import PostProcess
from .utils import MLP


class DINO(nn.Module):
    """DINO: DETR with improved denoising anchor boxes.

    `forward(samples, targets=None)` takes a NestedTensor or a list of CHW
    images (normalized) and, in training mode, the targets used to build the
    denoising queries. It returns the final layer's `pred_logits` [B, Q, C]
    and `pred_boxes` [B, Q, 4] (normalized cx, cy, w, h), `aux_outputs` for
    the other decoder layers, `interm_outputs` for the encoder proposals and
    `dn_meta` (denoising outputs in training).

    detrex's variant of the head is a set of options: `enc_heads_in_decoder_list`
    (7 independent heads, the last one scoring the encoder proposals, as
    `class_embed.6` / `bbox_embed.6`), `label_enc_extra_row=False` (a
    label embedding of `dn_labelbook_size` rows), `eval_mask_padding=False`
    (evaluation treats the padding of a batch as image) and `pad_to_square`
    (every batch padded to a square of that side and masked, DINO-EVA).
    """

    def __init__(self, backbone: nn.Module, transformer: DeformableTransformer, num_classes: int,
                 num_queries: int, num_feature_levels: int, aux_loss: bool = True,
                 dec_pred_class_embed_share: bool = True, dec_pred_bbox_embed_share: bool = True,
                 two_stage_class_embed_share: bool = False, two_stage_bbox_embed_share: bool = False,
                 dn_number: int = 100, dn_box_noise_scale: float = 0.4, dn_label_noise_ratio: float = 0.5,
                 dn_labelbook_size: int = 100, enc_heads_in_decoder_list: bool = False,
                 label_enc_extra_row: bool = True, eval_mask_padding: bool = True, pad_to_square: int = 0):
        super().__init__()
        self.num_queries = num_queries
        self.transformer = transformer
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim = transformer.d_model
        self.num_feature_levels = num_feature_levels
        self.aux_loss = aux_loss
        self.dn_number = dn_number
        self.dn_box_noise_scale = dn_box_noise_scale
        self.dn_label_noise_ratio = dn_label_noise_ratio
        self.dn_labelbook_size = dn_labelbook_size
        self.label_enc = nn.Embedding(dn_labelbook_size + int(label_enc_extra_row), hidden_dim)
        self.eval_mask_padding = eval_mask_padding
        self.pad_to_square = pad_to_square

        self.input_proj = self._input_projections(backbone.num_channels, num_feature_levels, hidden_dim)
        self.backbone = backbone

        class_embed = nn.Linear(hidden_dim, num_classes)
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        prior_prob = 0.01
        nn.init.constant_(class_embed.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        # detrex: one more head after the decoder's, scoring the encoder proposals
        layers = transformer.num_decoder_layers + int(enc_heads_in_decoder_list)
        self.bbox_embed = nn.ModuleList(
            [bbox_embed if dec_pred_bbox_embed_share else copy.deepcopy(bbox_embed) for _ in range(layers)])
        self.class_embed = nn.ModuleList(
            [class_embed if dec_pred_class_embed_share else copy.deepcopy(class_embed) for _ in range(layers)])
        transformer.decoder.bbox_embed = self.bbox_embed
        transformer.decoder.class_embed = self.class_embed
        if enc_heads_in_decoder_list:
            transformer.enc_out_bbox_embed = self.bbox_embed[-1]
            transformer.enc_out_class_embed = self.class_embed[-1]
        else:
            transformer.enc_out_bbox_embed = bbox_embed if two_stage_bbox_embed_share else copy.deepcopy(bbox_embed)
            transformer.enc_out_class_embed = (class_embed if two_stage_class_embed_share
                                               else copy.deepcopy(class_embed))

        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

    @staticmethod
    def _input_projections(in_channels: List[int], num_levels: int, hidden_dim: int) -> nn.ModuleList:
        """1x1 conv + GroupNorm per backbone level, then stride-2 3x3 convs for extra levels."""
        projs = [nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim))
                 for c in in_channels]
        channels = in_channels[-1]
        for _ in range(num_levels - len(in_channels)):
            projs.append(nn.Sequential(nn.Conv2d(channels, hidden_dim, kernel_size=3, stride=2, padding=1),
                                       nn.GroupNorm(32, hidden_dim)))
            channels = hidden_dim
        return nn.ModuleList(projs)

    def _multiscale_features(self, samples: NestedTensor):
        features, pos = self.backbone(samples)
        srcs = [proj(f.tensors) for proj, f in zip(self.input_proj, features)]
        masks = [f.mask for f in features]
        pos = list(pos)
        for level in range(len(features), self.num_feature_levels):
            src = self.input_proj[level](features[-1].tensors if level == len(features) else srcs[-1])
            mask = downsample_mask(samples.mask, src.shape[-2:])
            srcs.append(src)
            masks.append(mask)
            pos.append(self.backbone[1](NestedTensor(src, mask)).to(src.dtype))
        return srcs, masks, pos

    def _pad_and_mask(self, samples: NestedTensor) -> NestedTensor:
        """Apply `pad_to_square` and, in eval, `eval_mask_padding=False` to a padded batch."""
        if self.pad_to_square:
            h, w = samples.tensors.shape[-2:]
            if torch.jit.is_tracing():  # ONNX export: h, w are traced sizes, which Python's max() would freeze
                side = torch.clamp(torch.maximum(h, w), min=self.pad_to_square)
            else:  # torch.export / compile: symbolic sizes; max() would keep only the example's branch (h < w)
                side = torch.sym_max(torch.sym_max(h, w), self.pad_to_square)
            if torch.jit.is_tracing() or torch.compiler.is_compiling() or (h, w) != (side, side):
                # the mask padded as uint8: for a bool pad of a fused OR (the exported graph's mask) inductor's
                # C++ code mixes vector mask types and does not compile (torch 2.14, AOTInductor of DINO-EVA)
                mask = F.pad(samples.mask.to(torch.uint8), (0, side - w, 0, side - h), value=1).to(torch.bool)
                samples = NestedTensor(F.pad(samples.tensors, (0, side - w, 0, side - h)), mask)
        if not self.training and not self.eval_mask_padding:
            samples = NestedTensor(samples.tensors, torch.zeros_like(samples.mask))
        return samples

    def forward(self, samples, targets: Optional[Sequence[Dict[str, Tensor]]] = None) -> Dict:
        if isinstance(samples, (list, tuple, Tensor)):
            samples = nested_tensor_from_tensor_list(list(samples))
        samples = self._pad_and_mask(samples)
        srcs, masks, pos = self._multiscale_features(samples)

        if self.training and self.dn_number > 0 and targets is not None:
            dn_labels, dn_boxes, attn_mask, dn_meta = prepare_for_cdn(
                targets, self.dn_number, self.dn_label_noise_ratio, self.dn_box_noise_scale, self.num_queries,
                self.num_classes, self.hidden_dim, self.label_enc)
        else:
            dn_labels = dn_boxes = attn_mask = dn_meta = None

        hs, references, hs_enc, ref_enc, init_box_proposal = self.transformer(
            srcs, masks, dn_boxes, pos, dn_labels, attn_mask)
        # keeps label_enc in the graph when a batch has no objects (DDP needs every parameter used)
        hs[0] = hs[0] + self.label_enc.weight[0, 0] * 0.0

        coords = torch.stack([
            (box_head(h) + inverse_sigmoid(ref)).sigmoid()
            for box_head, h, ref in zip(self.bbox_embed, hs, references[:-1])
        ])
        logits = torch.stack([linear(h, class_head) for class_head, h in zip(self.class_embed, hs)])
        logits, coords = split_denoising_outputs(logits, coords, dn_meta)

        out = {"pred_logits": logits[-1], "pred_boxes": coords[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": c, "pred_boxes": b} for c, b in zip(logits[:-1], coords[:-1])]
        interm_logits = linear(hs_enc[-1], self.transformer.enc_out_class_embed)
        out["interm_outputs"] = {"pred_logits": interm_logits, "pred_boxes": ref_enc[-1]}
        out["interm_outputs_for_matching_pre"] = {"pred_logits": interm_logits, "pred_boxes": init_box_proposal}
        out["dn_meta"] = dn_meta
        return out


def build_weight_dict(args) -> Dict[str, float]:
    """Loss coefficients for every loss key the criterion returns.

    The denoising class loss has the matching class loss's coefficient unless
    `dn_cls_loss_coef` sets its own (detrex's better_hyper: 2.0 matched, 1.0 denoising).
    """
    main = {"loss_ce": args.cls_loss_coef, "loss_bbox": args.bbox_loss_coef, "loss_giou": args.giou_loss_coef}
    weights = dict(main)
    if args.use_dn:
        dn_cls = getattr(args, "dn_cls_loss_coef", None)
        weights.update({f"{k}_dn": v for k, v in main.items()})
        if dn_cls is not None:
            weights["loss_ce_dn"] = dn_cls
    per_layer = dict(weights)
    if args.aux_loss:
        for i in range(args.dec_layers - 1):
            weights.update({f"{k}_{i}": v for k, v in per_layer.items()})
    box_factor = 0.0 if args.no_interm_box_loss else 1.0
    interm_factor = {"loss_ce": 1.0, "loss_bbox": box_factor, "loss_giou": box_factor}
    weights.update({f"{k}_interm": v * args.interm_loss_coef * interm_factor[k] for k, v in main.items()})
    return weights


@MODULE_BUILD_FUNCS.register("dino")
def build_dino(args):
    """(model, criterion, postprocessors) for a DINO config."""
    check_model_config(args)
    model = DINO(
        build_backbone(args),
        build_deformable_transformer(args),
        num_classes=args.num_classes,
        num_queries=args.num_queries,
        num_feature_levels=args.num_feature_levels,
        aux_loss=args.aux_loss,
        dec_pred_class_embed_share=args.dec_pred_class_embed_share,
        dec_pred_bbox_embed_share=args.dec_pred_bbox_embed_share,
        two_stage_class_embed_share=args.two_stage_class_embed_share,
        two_stage_bbox_embed_share=args.two_stage_bbox_embed_share,
        dn_number=args.dn_number if args.use_dn else 0,
        dn_box_noise_scale=args.dn_box_noise_scale,
        dn_label_noise_ratio=args.dn_label_noise_ratio,
        dn_labelbook_size=args.dn_labelbook_size,
        enc_heads_in_decoder_list=bool(getattr(args, "enc_heads_in_decoder_list", False)),
        label_enc_extra_row=bool(getattr(args, "label_enc_extra_row", True)),
        eval_mask_padding=bool(getattr(args, "eval_mask_padding", True)),
        pad_to_square=int(getattr(args, "pad_to_square", 0) or 0),
    )
    criterion = SetCriterion(args.num_classes, build_matcher(args), build_weight_dict(args), args.focal_alpha)
    criterion.to(torch.device(args.device))
    postprocessors = {"bbox": PostProcess(num_select=args.num_select, nms_iou_threshold=args.nms_iou_threshold,
                                          clip_boxes=bool(getattr(args, "postprocess_clip_boxes", False)))}
    return model, criterion, postprocessors
