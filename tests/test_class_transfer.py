"""--finetune_class_map (util/class_transfer.py): exactly the rows of the shared classes are copied."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from helpers import build_tiny_model
from util.checkpoint import CheckpointError
from util.class_transfer import COCO_CATEGORIES, build_class_map, transfer_classes
from util.slconfig import ConfigError

SHAPES = {1: "circle", 2: "square", 3: "triangle", 4: "cross", 5: "star", 6: "ring"}


@pytest.fixture(scope="module")
def old_checkpoint():
    model, _, _ = build_tiny_model("num_classes=7", "dn_labelbook_size=7")
    for k, v in model.state_dict().items():  # distinct rows, so a copied row is recognisable
        if "class_embed" in k or "label_enc" in k:
            v.copy_(torch.randn_like(v))  # in place: the heads shared between layers stay shared
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return {"model": state, "args": argparse.Namespace(category_names=dict(SHAPES))}


def _new_model():
    model, _, _ = build_tiny_model("num_classes=4", "dn_labelbook_size=4")
    return model


def _class_keys(model):
    return [k for k in model.state_dict() if "class_embed" in k or "label_enc" in k]


def _check_rows(model, before, old_state, mapping):
    """Rows in `mapping` equal the checkpoint's, every other row is as initialised, other tensors untouched."""
    after = model.state_dict()
    keys = _class_keys(model)
    assert {"label_enc.weight", "class_embed.0.weight", "class_embed.0.bias", "transformer.enc_out_class_embed.weight",
            "transformer.decoder.class_embed.1.bias"} <= set(keys)
    for key in keys:
        for row in range(after[key].shape[0]):
            expected = old_state[key][mapping[row]] if row in mapping else before[key][row]
            assert torch.equal(after[key][row], expected), (key, row)
    for key in after:
        if key not in keys:
            assert torch.equal(after[key], before[key]), key


def test_auto_copies_exactly_the_rows_of_classes_with_the_same_name(old_checkpoint):
    model = _new_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new_names = {1: "Star", 2: "circle", 3: "hexagon"}  # star=5 and circle=1 in the checkpoint; hexagon is new
    mapping = transfer_classes(model, old_checkpoint, "old.pth", "auto", new_names)
    assert mapping == {1: 5, 2: 1}
    _check_rows(model, before, old_checkpoint["model"], mapping)


def test_json_map_adds_renamed_classes_and_can_drop_a_match(old_checkpoint, tmp_path):
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps({"hexagon": "square", "Star": None, "2": 6}))  # by name, null = new, by id
    model = _new_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = transfer_classes(model, old_checkpoint, "old.pth", str(spec), {1: "Star", 2: "circle", 3: "hexagon"})
    assert mapping == {2: 6, 3: 2}
    _check_rows(model, before, old_checkpoint["model"], mapping)


def test_contiguous_labels_map_by_position():
    new = {10: "dog", 20: "cat"}  # contiguous: label 0 = id 10 (dog), label 1 = id 20 (cat)
    coco = dict(COCO_CATEGORIES)
    from util.class_transfer import label_names
    assert build_class_map(label_names(new, contiguous=True), coco, "auto") == {0: 18, 1: 17}


def test_checkpoint_without_names_is_read_as_coco():
    from util.class_transfer import checkpoint_label_names
    for rows, dog in ((91, 18), (80, 16)):
        names = checkpoint_label_names({"model": {"class_embed.0.weight": torch.zeros(rows, 4)}}, "x.pth")
        assert names[dog] == "dog" and len(names) == 80
    with pytest.raises(CheckpointError, match="records no class names"):
        checkpoint_label_names({"model": {"class_embed.0.weight": torch.zeros(7, 4)}}, "x.pth")


def test_map_file_problems_name_the_file_and_the_class(old_checkpoint, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hexagon": "pentagon"}))
    with pytest.raises(ConfigError, match="checkpoint class 'pentagon' is not one of its classes"):
        transfer_classes(_new_model(), old_checkpoint, "old.pth", str(bad), {1: "hexagon"})
    with pytest.raises(ConfigError, match="no such file"):
        transfer_classes(_new_model(), old_checkpoint, "old.pth", str(tmp_path / "none.json"), {1: "hexagon"})
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a json object"):
        transfer_classes(_new_model(), old_checkpoint, "old.pth", str(bad), {1: "hexagon"})
