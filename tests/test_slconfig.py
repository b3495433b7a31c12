"""Python config files and --options, as users of the original write them."""
import argparse

import pytest

from util.slconfig import ConfigError, DictAction, SLConfig, check_options, parse_option_value


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.py").write_text("a = 1\nb = [1, 2]\nnested = dict(x=1, y=2)\n")
    (tmp_path / "child.py").write_text("_base_ = ['base.py']\nb = [3]\nnested = dict(y=5)\nc = 'z'\n")
    cfg = SLConfig.fromfile(str(tmp_path / "child.py"))
    assert cfg.to_dict() == {"a": 1, "b": [3], "nested": {"x": 1, "y": 5}, "c": "z"}
    assert cfg.nested.y == 5


def test_merge_from_dict_with_dotted_keys():
    cfg = SLConfig({"lr": 0.1, "model": {"depth": 50, "width": 2}})
    cfg.merge_from_dict({"lr": 0.2, "model.depth": 101})
    assert cfg.to_dict() == {"lr": 0.2, "model": {"depth": 101, "width": 2}}


def test_dump_round_trips(tmp_path):
    cfg = SLConfig.fromfile("config/DINO/DINO_5scale.py")
    path = tmp_path / "dumped.py"
    cfg.dump(str(path))
    assert SLConfig.fromfile(str(path)).to_dict() == cfg.to_dict()


def test_dino_configs_keep_original_values():
    cfg = SLConfig.fromfile("config/DINO/DINO_4scale.py")
    # the class counts are set from the data ('auto': 91 on COCO, datasets/class_counts.py)
    assert (cfg.num_classes, cfg.dn_labelbook_size, cfg.num_queries, cfg.dn_number) == ("auto", "auto", 900, 100)
    assert cfg.data_aug_max_size == 1333 and cfg.lr_backbone_names == ["backbone.0"]
    five = SLConfig.fromfile("config/DINO/DINO_5scale.py")
    assert five.num_feature_levels == 5 and five.return_interm_indices == [0, 1, 2, 3]


@pytest.mark.parametrize("text,value", [
    ("1", 1), ("1e-4", 1e-4), ("TRUE", True), ("false", False), ("None", None), ("resnet50", "resnet50"),
    ("1,2,3", [1, 2, 3]), ("[128]", [128]), ("[400, 500]", [400, 500]), ("[]", []),
])
def test_option_values_parse_like_the_original(text, value):
    assert parse_option_value(text) == value


def test_dict_action_collects_pairs():
    parser = argparse.ArgumentParser()
    parser.add_argument("--options", nargs="+", action=DictAction)
    args = parser.parse_args(["--options", "a=1", "b=x,y", "c.d=TRUE"])
    assert args.options == {"a": 1, "b": ["x", "y"], "c.d": True}


def test_check_options_rejects_unknown_and_mistyped_keys():
    cfg = SLConfig.fromfile("config/DINO/DINO_4scale.py")
    with pytest.raises(ConfigError, match="'num_clases'.*num_classes"):
        check_options(cfg, {"num_clases": 3})
    with pytest.raises(ConfigError, match="epochs"):
        check_options(cfg, {"epochs": "many"})
    with pytest.raises(ConfigError, match="use_ema"):
        check_options(cfg, {"use_ema": 3})


def test_check_options_accepts_original_script_options():
    cfg = SLConfig.fromfile("config/DINO/DINO_4scale.py")
    opts = check_options(cfg, {"dn_scalar": 100, "embed_init_tgt": True, "dn_label_coef": 1.0,
                               "dn_bbox_coef": 1.0, "use_ema": False, "dn_box_noise_scale": 1,
                               "backbone_dir": "/weights", "data_aug_scales": 128})
    assert opts == {"embed_init_tgt": True, "use_ema": False, "dn_box_noise_scale": 1.0,
                    "backbone_dir": "/weights", "data_aug_scales": [128]}


def test_missing_file_and_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        SLConfig.fromfile(str(tmp_path / "nope.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("lr = = 1\n")
    with pytest.raises(ConfigError, match="line 1"):
        SLConfig.fromfile(str(bad))
