"""Config files: every shipped leaf loads through its _BASE_ chain; unknown keys are errors naming the key."""
import glob
import os

import pytest

from s3d_det.config import ConfigError, get_cfg, load_config
from s3d_det.engine.classification import CLS_DATASETS
from s3d_det.modeling import VideoClassifier
from s3d_det.modeling.build import build_action_detector_from_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))
CLS_CONFIGS = [p for p in CONFIGS if os.sep + "cls" + os.sep in p]
DET_CONFIGS = [p for p in CONFIGS if p not in CLS_CONFIGS]


def test_every_default_key_has_a_comment():
    source = open(os.path.join(ROOT, "s3d_det", "config.py")).read().splitlines()
    for i, line in enumerate(source):
        if line.startswith("_C.") and "CfgNode()" not in line:
            assert source[i - 1].startswith("#") or source[i - 1].startswith("_C."), f"no comment above: {line}"


@pytest.mark.parametrize("path", DET_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_configs_load(path):
    cfg = load_config(path)
    model = build_action_detector_from_cfg(cfg, num_classes=6)
    # the paper's mixed_4f; the tiny CPU configs cut their small actors' RoIs from the stride-8 mixed_3c
    assert model.roi_head.num_classes == 6 and model.feature_3d == ("mixed_3c" if "synthetic" in path else "mixed_4f")
    if cfg.MODEL.BACKBONE_3D.PRETRAIN:  # the classification config it names exists and builds the same 3D network
        pretrain = load_config(os.path.join(os.path.dirname(path), cfg.MODEL.BACKBONE_3D.PRETRAIN))
        classifier = VideoClassifier.from_config(pretrain, num_classes=7)
        assert classifier.backbone.state_dict().keys() == model.backbone_3d.state_dict().keys()
        own = model.backbone_3d.state_dict()
        assert all(v.shape == own[k].shape for k, v in classifier.backbone.state_dict().items())
        if pretrain.DATASETS.NAME == "synthetic_clips":  # pretrained on the clips of the same class set
            assert pretrain.DATASETS.SYNTHETIC_CLASSES == cfg.DATASETS.SYNTHETIC_CLASSES


@pytest.mark.parametrize("path", CLS_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_classification_configs_load(path):
    cfg = load_config(path)
    classifier = VideoClassifier.from_config(cfg, num_classes=5)
    assert cfg.DATASETS.NAME in CLS_DATASETS and classifier.head.proj.out_channels == 5


def test_leaf_inherits_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_ITER: 5\n")
    (tmp_path / "leaf.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 10\n")
    cfg = load_config(str(tmp_path / "leaf.yaml"), ["TEST.IOU", "0.3"])
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.TEST.IOU) == (0.1, 10, 0.3)
    assert get_cfg().SOLVER.MAX_ITER != 10  # the defaults are untouched


def test_unknown_keys_name_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("SOLVER:\n  MAXITER: 10\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*SOLVER\.MAXITER"):
        load_config(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="SOLVER.FOO"):
        load_config(None, ["SOLVER.FOO", "1"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config(None, ["SOLVER.MAX_ITER"])
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_config(str(tmp_path / "nowhere.yaml"))


def test_whole_numbers_for_float_keys_and_type_mismatches(tmp_path):
    cfg = load_config(None, ["MODEL.ROI_HEAD.BOX_REG_LOSS_WEIGHT", "0", "SOLVER.BASE_LR", "1", "SOLVER.MAX_ITER", "7"])
    assert cfg.MODEL.ROI_HEAD.BOX_REG_LOSS_WEIGHT == 0.0 and type(cfg.MODEL.ROI_HEAD.BOX_REG_LOSS_WEIGHT) is float
    assert cfg.SOLVER.BASE_LR == 1.0 and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.SOLVER.MAX_ITER == 7 and type(cfg.SOLVER.MAX_ITER) is int  # int keys stay int
    with pytest.raises(ConfigError, match="command-line override.*SOLVER.MAX_ITER"):
        load_config(None, ["SOLVER.MAX_ITER", "2.5"])
    (tmp_path / "typed.yaml").write_text("SOLVER:\n  MAX_ITER: fast\n")
    with pytest.raises(ConfigError, match=r"typed\.yaml.*SOLVER\.MAX_ITER"):
        load_config(str(tmp_path / "typed.yaml"))


def test_words_outside_their_choices_name_the_key():
    with pytest.raises(ConfigError, match="SOLVER.OPTIMIZER='lbfgs'.*'sgd', 'adamw'"):
        load_config(None, ["SOLVER.OPTIMIZER", "lbfgs"])
    with pytest.raises(ConfigError, match="TEST.PROTOCOL"):
        load_config(None, ["TEST.PROTOCOL", "coco"])
    assert load_config(None, ["SOLVER.OPTIMIZER", "adamw"]).SOLVER.OPTIMIZER == "adamw"


def test_choices_agree_with_the_modules():
    from s3d_det.config import CHOICES
    from s3d_det.data.clips import BOUNDARY_MODES
    from s3d_det.data.modality import MODALITIES
    from s3d_det.engine.evaluation import EVAL_PROTOCOLS
    from s3d_det.engine.schedule import OPTIMIZERS, SCHEDULES
    from s3d_det.engine.trainer import AMP_DTYPES
    from s3d_det.modeling.detector import PROPOSAL_SOURCES
    from s3d_det.modeling.roi_head import LOSSES
    from s3d_det.modeling.two_stream import CLS_FUSION_METHODS

    assert CHOICES["MODEL.PROPOSALS"] == PROPOSAL_SOURCES and CHOICES["INPUT.BOUNDARY"] == BOUNDARY_MODES
    assert CHOICES["SOLVER.OPTIMIZER"] == OPTIMIZERS and CHOICES["SOLVER.SCHEDULE"] == SCHEDULES
    assert CHOICES["SOLVER.AMP_DTYPE"] == ("", *AMP_DTYPES) and CHOICES["TEST.PROTOCOL"] == EVAL_PROTOCOLS
    assert CHOICES["INPUT.MODALITY"] == MODALITIES and CHOICES["MODEL.ROI_HEAD.LOSS"] == LOSSES
    assert CHOICES["MODEL.TWO_STREAM.CLS_FUSION"] == CLS_FUSION_METHODS


def test_freeze_2d_at_becomes_a_model_change_or_names_the_key(caplog):
    from s3d_det.engine.defaults import model_changes
    from s3d_det.modeling.detector import ActionDetector

    assert model_changes(load_config(None, [])) == []
    assert model_changes(load_config(None, ["SOLVER.FREEZE_2D_AT", "0"])) == [(0, ActionDetector.freeze_backbone_2d)]
    last = ["SOLVER.MAX_ITER", "100", "SOLVER.FREEZE_2D_AT"]
    assert model_changes(load_config(None, last + ["99"])) == [(99, ActionDetector.freeze_backbone_2d)]
    with pytest.raises(ConfigError, match=r"SOLVER.FREEZE_2D_AT must be -1 \(never\) or an iteration >= 0, got -2"):
        model_changes(load_config(None, ["SOLVER.FREEZE_2D_AT", "-2"]))
    # the recipe's freeze in a shortened run, or with oracle boxes: left out, and said so
    with caplog.at_level("WARNING", logger="s3d_det.engine.defaults"):
        assert model_changes(load_config(None, last + ["100"])) == []
        assert model_changes(load_config(None, ["SOLVER.FREEZE_2D_AT", "5", "MODEL.PROPOSALS", "gt"])) == []
    assert "SOLVER.FREEZE_2D_AT 100 is not before SOLVER.MAX_ITER 100" in caplog.text
    assert "SOLVER.FREEZE_2D_AT 5: MODEL.PROPOSALS 'gt' builds no 2D backbone, so nothing is frozen" in caplog.text


@pytest.mark.parametrize("key,value,message", [
    ("DATALOADER.FRAME_CACHE_MB", -1, "DATALOADER.FRAME_CACHE_MB must be at least 0"),
    ("DATALOADER.IDLE_HOLD", -2, "DATALOADER.IDLE_HOLD must be -1"),
    ("TEST.SMOOTH_FRAMES", -1, "TEST.SMOOTH_FRAMES must be at least 0"),
    ("INPUT.HUE", 0.7, r"INPUT.HUE must lie in \[0, 0.5\]"),
])
def test_dataset_keys_out_of_range_are_named(key, value, message):
    from s3d_det.engine.defaults import build_datasets

    cfg = get_cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(ConfigError, match=message):  # checked before any file is read
        build_datasets(cfg, {"labels": ["a", "b"]}, "/nonexistent")


def test_resolve_device():
    import torch

    from s3d_det.engine.defaults import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = torch.device("cuda:1") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("cuda:1") == expected  # without CUDA: the CPU, with a warning
    with pytest.raises(ConfigError, match="MODEL.DEVICE='gpu'"):
        resolve_device("gpu")
