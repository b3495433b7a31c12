"""The DINO model end to end at a tiny size: outputs, losses, gradients, config checks."""
import pathlib

import pytest
import torch

from helpers import REPO, build_tiny_model, make_targets, random_images, tiny_args


def test_train_step_outputs_losses_and_gradients():
    model, criterion, _ = build_tiny_model()
    model.train()
    targets = make_targets([3, 0])          # includes an image with no objects
    out = model(random_images([(64, 96), (80, 64)]), targets)
    assert out["pred_logits"].shape == (2, 20, 5) and out["pred_boxes"].shape == (2, 20, 4)
    assert len(out["aux_outputs"]) == 1 and out["dn_meta"]["pad_size"] > 0
    losses = criterion(out, targets)
    assert set(criterion.weight_dict) <= set(losses)
    total = sum(losses[k] * w for k, w in criterion.weight_dict.items())
    assert torch.isfinite(total)
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for n, g in grads.items() if not n.startswith("backbone")), \
        [n for n, g in grads.items() if g is None]
    assert grads["label_enc.weight"].abs().sum() > 0      # denoising queries are trained
    assert model.backbone[0].body.layer1[0].conv1.weight.grad is None   # stem + layer1 frozen as the original


def test_batch_without_any_object_trains():
    model, criterion, _ = build_tiny_model()
    model.train()
    targets = make_targets([0, 0])
    out = model(random_images([(64, 64), (64, 64)]), targets)
    losses = criterion(out, targets)
    assert float(losses["loss_bbox_dn"]) == 0.0
    sum(losses[k] * w for k, w in criterion.weight_dict.items()).backward()


def test_eval_has_no_denoising_and_postprocess_caps_num_select():
    model, _, post = build_tiny_model()
    model.eval()
    img = random_images([(64, 96)])[0]
    with torch.no_grad():
        alone = model([img])
        res = post["bbox"](alone, torch.tensor([[64, 96]]))
    assert "dn_meta" in alone and alone["dn_meta"] is None
    assert res[0]["boxes"].shape == (100, 4)   # num_select=300 capped by 20 queries x 5 classes


@pytest.mark.parametrize("config", ["config/DINO/DINO_4scale.py", "config/DINO/DINO_5scale.py"])
def test_configs_build_with_original_key_layout(config):
    model, _, _ = build_tiny_model(config=config)
    levels = 5 if "5scale" in config else 4
    assert len(model.input_proj) == levels
    assert model.transformer.level_embed.shape[0] == levels
    keys = model.state_dict().keys()
    assert "transformer.decoder.bbox_embed.0.layers.0.weight" in keys and "bbox_embed.1.layers.2.bias" in keys
    assert "transformer.enc_out_class_embed.weight" in keys and "label_enc.weight" in keys


def test_unshared_heads_are_separate_modules():
    model, _, _ = build_tiny_model("dec_pred_bbox_embed_share=FALSE", "dec_pred_class_embed_share=FALSE")
    assert model.bbox_embed[0] is not model.bbox_embed[1]
    assert model.class_embed[0] is not model.class_embed[1]
    shared, _, _ = build_tiny_model()
    assert shared.bbox_embed[0] is shared.bbox_embed[1]


@pytest.mark.parametrize("option,key", [
    ("two_stage_type=no", "two_stage_type"),
    ("decoder_sa_type=ca_label", "decoder_sa_type"),
    ("num_patterns=2", "num_patterns"),
    ("masks=TRUE", "masks"),
])
def test_unsupported_values_name_the_key(option, key):
    from main import build_model_main
    with pytest.raises(ValueError, match=key):
        build_model_main(tiny_args(option))


def test_labelbook_smaller_than_classes_says_what_to_set():
    from main import build_model_main
    with pytest.raises(ValueError, match="dn_labelbook_size=7"):
        build_model_main(tiny_args("num_classes=7", "dn_labelbook_size=3"))


def test_no_hard_coded_cuda_calls():
    offenders = []
    for path in pathlib.Path(REPO).rglob("*.py"):
        if any(part in (".venv", "build", "tests") for part in path.parts):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        if ".cuda()" in text or ".to('cuda')" in text or '.to("cuda")' in text:
            offenders.append(str(path))
    assert not offenders


def test_images_too_small_for_the_query_count_give_a_clear_error():
    model, _, _ = build_tiny_model("num_queries=200")   # a 96x96 image gives 12*12 + 6*6 + 3*3 + 2*2 = 193 positions
    model.eval()
    with pytest.raises(ValueError, match="num_queries=200"):
        model(random_images([(96, 96)]))
