"""DINO's transformer: a deformable encoder over the multi-scale features,
two-stage ("mixed") query selection, and a deformable decoder that refines
anchor boxes layer by layer ("look forward twice").

All tensors are batch-first: [batch, tokens or queries, channels].
"""
import copy
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from util.misc import inverse_sigmoid

from .fused_linear import linear
from .ops._ext import is_exporting
from .ops.modules import MSDeformAttn
from .utils import MLP, LevelShapes, activation_fn, encoder_output_proposals, level_sizes, sine_embed_boxes


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


class DeformableEncoderLayer(nn.Module):
    """Multi-scale deformable self-attention + FFN, post-norm."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, activation: str,
                 n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        activation_fn(activation)  # fails early on an unknown name
        self.activation = activation
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, padding_mask: Optional[Tensor],
                level_shapes: Optional[LevelShapes] = None) -> Tensor:
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask,
                              level_shapes)
        src = self.norm1(src + self.dropout1(attn))
        ffn = linear(self.dropout2(linear(src, self.linear1, self.activation)), self.linear2)
        return self.norm2(src + self.dropout3(ffn))


class DeformableEncoder(nn.Module):
    def __init__(self, layer: DeformableEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers

    @staticmethod
    def reference_points(spatial_shapes: LevelShapes, valid_ratios: Tensor, device: torch.device) -> Tensor:
        """Centre of every token, normalized by its image's valid area: [B, tokens, levels, 2]."""
        points = []
        for level, (h, w) in enumerate(level_sizes(spatial_shapes)):
            # arange + 0.5 equals linspace(0.5, h - 0.5, h) exactly; ONNX's linspace divides by h - 1 (NaN at h = 1)
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=torch.float32, device=device) + 0.5,
                torch.arange(w, dtype=torch.float32, device=device) + 0.5,
                indexing="ij",
            )
            ys = ys.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)
            xs = xs.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
            points.append(torch.stack((xs, ys), -1))
        points = torch.cat(points, 1)
        return points[:, :, None] * valid_ratios[:, None]

    def forward(self, src: Tensor, pos: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Tensor, padding_mask: Tensor, level_shapes: Optional[LevelShapes] = None) -> Tensor:
        """`level_shapes`: the (h, w) of `spatial_shapes` as Python (or symbolic) ints, if known."""
        reference_points = self.reference_points(spatial_shapes if level_shapes is None else level_shapes,
                                                 valid_ratios, src.device)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask, level_shapes)
        return src


class DeformableDecoderLayer(nn.Module):
    """Self-attention among queries, deformable cross-attention into the
    memory around each query's anchor box, FFN; each post-norm."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, activation: str,
                 n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        activation_fn(activation)  # fails early on an unknown name
        self.activation = activation
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor, memory: Tensor,
                memory_padding_mask: Optional[Tensor], level_start_index: Tensor, spatial_shapes: Tensor,
                self_attn_mask: Optional[Tensor] = None, level_shapes: Optional[LevelShapes] = None) -> Tensor:
        q = k = tgt + query_pos
        tgt = self.norm2(tgt + self.dropout2(self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]))
        attn = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes, level_start_index,
                               memory_padding_mask, level_shapes)
        tgt = self.norm1(tgt + self.dropout1(attn))
        ffn = linear(self.dropout3(linear(tgt, self.linear1, self.activation)), self.linear2)
        return self.norm3(tgt + self.dropout4(ffn))


class DeformableDecoder(nn.Module):
    """Decoder with iterative box refinement.

    Each layer's query position is an MLP of the sine embedding of its anchor
    box; after each layer the box head predicts a delta in inverse-sigmoid
    space. The next layer starts from the detached refined box, while the box
    returned for layer i+1's loss keeps the gradient of layer i's prediction.
    `bbox_embed` / `class_embed` are set by the DINO head (shared modules).
    """

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int, d_model: int,
                 use_detached_boxes_dec_out: bool = False):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.use_detached_boxes_dec_out = use_detached_boxes_dec_out
        self.bbox_embed: Optional[nn.ModuleList] = None
        self.class_embed: Optional[nn.ModuleList] = None

    def forward(self, tgt: Tensor, memory: Tensor, memory_padding_mask: Tensor, refpoints_unsigmoid: Tensor,
                level_start_index: Tensor, spatial_shapes: Tensor, valid_ratios: Tensor,
                self_attn_mask: Optional[Tensor] = None,
                level_shapes: Optional[LevelShapes] = None) -> Tuple[List[Tensor], List[Tensor]]:
        output = tgt
        reference_points = refpoints_unsigmoid.sigmoid()
        intermediate, references = [], [reference_points]
        ratios = torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # B, 1, levels, 4
        for layer_id, layer in enumerate(self.layers):
            reference_input = reference_points[:, :, None] * ratios  # B, Q, levels, 4
            query_pos = self.ref_point_head(sine_embed_boxes(reference_input[:, :, 0, :], self.d_model))
            output = layer(output, query_pos, reference_input, memory, memory_padding_mask, level_start_index,
                           spatial_shapes, self_attn_mask, level_shapes)
            refined = (self.bbox_embed[layer_id](output) + inverse_sigmoid(reference_points)).sigmoid()
            reference_points = refined.detach()
            references.append(reference_points if self.use_detached_boxes_dec_out else refined)
            intermediate.append(self.norm(output))
        return intermediate, references


class DeformableTransformer(nn.Module):
    """Encoder + two-stage query selection + decoder (see module docstring)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_queries: int = 900, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.0,
                 activation: str = "relu", num_feature_levels: int = 4, enc_n_points: int = 4,
                 dec_n_points: int = 4, two_stage_learn_wh: bool = False, embed_init_tgt: bool = True,
                 use_detached_boxes_dec_out: bool = False):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        self.num_queries = num_queries
        self.num_feature_levels = num_feature_levels
        self.num_decoder_layers = num_decoder_layers
        self.embed_init_tgt = embed_init_tgt

        self.encoder = DeformableEncoder(
            DeformableEncoderLayer(d_model, dim_feedforward, dropout, activation, num_feature_levels, nhead,
                                   enc_n_points), num_encoder_layers)
        self.decoder = DeformableDecoder(
            DeformableDecoderLayer(d_model, dim_feedforward, dropout, activation, num_feature_levels, nhead,
                                   dec_n_points), num_decoder_layers, d_model, use_detached_boxes_dec_out)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.tgt_embed = nn.Embedding(num_queries, d_model) if embed_init_tgt else None
        # two-stage query selection
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        self.two_stage_wh_embedding = nn.Embedding(1, 2) if two_stage_learn_wh else None
        self.enc_out_class_embed: Optional[nn.Module] = None  # set by the DINO head
        self.enc_out_bbox_embed: Optional[nn.Module] = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)
        if self.two_stage_wh_embedding is not None:
            nn.init.constant_(self.two_stage_wh_embedding.weight, float(torch.logit(torch.tensor(0.05))))

    @staticmethod
    def valid_ratio(mask: Tensor) -> Tensor:
        """Fraction of unpadded width and height of each image: [B, 2] as (w, h)."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1).float() / h
        valid_w = (~mask[:, 0, :]).sum(1).float() / w
        return torch.stack([valid_w, valid_h], -1)

    def _flatten_levels(self, srcs: List[Tensor], masks: List[Tensor], pos_embeds: List[Tensor]):
        flat_src, flat_mask, flat_pos = [], [], []
        for level, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
            flat_src.append(src.flatten(2).transpose(1, 2))
            flat_mask.append(mask.flatten(1))
            flat_pos.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
        if torch.jit.is_tracing():
            # ONNX export (a torch.jit trace): from the shapes as a tensor op, not from Python ints, which
            # the trace would freeze as constants, so the exported graph keeps the image size dynamic
            spatial_shapes = torch.stack([torch._shape_as_tensor(src)[-2:] for src in srcs]).to(srcs[0].device)
        else:
            # eager and torch.compile / torch.export (dynamo): the sizes are Python or symbolic ints
            spatial_shapes = torch.tensor([src.shape[-2:] for src in srcs], dtype=torch.long, device=srcs[0].device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        return torch.cat(flat_src, 1), torch.cat(flat_mask, 1), torch.cat(flat_pos, 1), spatial_shapes, level_start_index

    def select_queries(self, memory: Tensor, mask_flatten: Tensor, spatial_shapes: LevelShapes):
        """Two-stage selection: score every encoder token as a proposal and keep the top `num_queries`.

        Returns (undetached selected boxes, unsigmoid; undetached selected
        content; their anchor proposals, sigmoid).
        """
        learned_wh = self.two_stage_wh_embedding.weight[0] if self.two_stage_wh_embedding is not None else None
        output_memory, proposals = encoder_output_proposals(memory, mask_flatten, spatial_shapes, learned_wh)
        output_memory = self.enc_output_norm(linear(output_memory, self.enc_output))
        if output_memory.shape[1] < self.num_queries:
            raise ValueError(
                f"the images give only {output_memory.shape[1]} feature positions over {len(spatial_shapes)} levels, "
                f"fewer than num_queries={self.num_queries} to select: use larger images (data_aug_scales / "
                f"data_aug_max_size) or a smaller num_queries")
        class_unselected = linear(output_memory, self.enc_out_class_embed)
        coord_unselected = self.enc_out_bbox_embed(output_memory) + proposals
        topk = torch.topk(class_unselected.max(-1)[0], self.num_queries, dim=1)[1]
        boxes = torch.gather(coord_unselected, 1, topk.unsqueeze(-1).repeat(1, 1, 4))
        content = torch.gather(output_memory, 1, topk.unsqueeze(-1).repeat(1, 1, self.d_model))
        anchors = torch.gather(proposals, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).sigmoid()
        return boxes, content, anchors

    def forward(self, srcs: List[Tensor], masks: List[Tensor], refpoint_embed: Optional[Tensor],
                pos_embeds: List[Tensor], tgt: Optional[Tensor], attn_mask: Optional[Tensor] = None):
        """
        srcs / masks / pos_embeds: per level [B, C, H, W] / [B, H, W] / [B, C, H, W].
        refpoint_embed, tgt: denoising queries [B, pad, 4] (unsigmoid) and [B, pad, C], or None.

        Returns hs (per decoder layer [B, Q', C]), references (layers+1 of
        [B, Q', 4], sigmoid), hs_enc [1, B, Q, C], ref_enc [1, B, Q, 4], and the
        selected anchors [B, Q, 4]; Q' includes the denoising queries.
        """
        src, mask_flatten, pos, spatial_shapes, level_start_index = self._flatten_levels(srcs, masks, pos_embeds)
        valid_ratios = torch.stack([self.valid_ratio(m) for m in masks], 1)
        # level sizes from the feature maps, not from spatial_shapes' values: an exported graph keeps them dynamic
        level_shapes = [tuple(s.shape[-2:]) for s in srcs]
        # no padding anywhere (a single image, a batch of one size): the attention need not mask anything.
        # Asking costs a device sync on a GPU and is data-dependent control flow (a graph break) in a
        # traced graph, so only eager CPU runs ask; elsewhere the mask is applied (all False: no change).
        if mask_flatten.device.type == "cpu" and not (is_exporting() or torch.compiler.is_compiling()):
            padding_mask = mask_flatten if bool(mask_flatten.any()) else None
        else:
            padding_mask = mask_flatten
        memory = self.encoder(src, pos, spatial_shapes, level_start_index, valid_ratios, padding_mask, level_shapes)

        boxes_undetached, content_undetached, init_box_proposal = self.select_queries(memory, mask_flatten,
                                                                                      level_shapes)
        batch = memory.shape[0]
        query_boxes = boxes_undetached.detach()
        if self.embed_init_tgt:
            query_content = self.tgt_embed.weight[None].repeat(batch, 1, 1)
        else:
            query_content = content_undetached.detach()
        if refpoint_embed is not None:
            query_boxes = torch.cat([refpoint_embed, query_boxes], 1)
            query_content = torch.cat([tgt, query_content], 1)

        hs, references = self.decoder(query_content, memory, padding_mask, query_boxes, level_start_index,
                                      spatial_shapes, valid_ratios, attn_mask, level_shapes)
        hs_enc = content_undetached.unsqueeze(0)
        ref_enc = boxes_undetached.sigmoid().unsqueeze(0)
        return hs, references, hs_enc, ref_enc, init_box_proposal


def build_deformable_transformer(args) -> DeformableTransformer:
    return DeformableTransformer(
        d_model=args.hidden_dim,
        nhead=args.nheads,
        num_queries=args.num_queries,
        num_encoder_layers=args.enc_layers,
        num_decoder_layers=args.dec_layers,
        dim_feedforward=args.dim_feedforward,
        dropout=args.dropout,
        activation=args.transformer_activation,
        num_feature_levels=args.num_feature_levels,
        enc_n_points=args.enc_n_points,
        dec_n_points=args.dec_n_points,
        two_stage_learn_wh=args.two_stage_learn_wh,
        embed_init_tgt=args.embed_init_tgt,
        use_detached_boxes_dec_out=args.use_detached_boxes_dec_out,
    )
