"""The classification half of the engine (s3d_det/engine/classification.py) and tools/train_cls.py: the 3D weights
it exports load into the detector, the detector's pretraining step reuses, refuses or trains, the multi-view
scores under two processes, and the tool run as a user runs it (shortened: an 8-video synthetic clip set, 32-pixel
crops, a few iterations)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import s3d_det.engine.classification as classification
from s3d_det.checkpoint.video import load_converted, load_pretrained_3d
from s3d_det.config import ConfigError, load_config
from s3d_det.data.video_dataset import TestVideoDataset as ViewDataset
from s3d_det.data.video_lists import VideoList, VideoRecord
from s3d_det.engine import launch
from s3d_det.engine.classification import WEIGHTS_3D_NAME, classify_views, config_digest, export_weights_3d
from s3d_det.engine.defaults import build_model
from s3d_det.modeling.build import build_action_detector_from_cfg
from s3d_det.modeling.s3dg import VideoClassifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLS_CONFIG = os.path.join(ROOT, "configs/cls/synthetic/s3dg_tiny.yaml")
DET_CONFIG = os.path.join(ROOT, "configs/synthetic/s3dg_tiny.yaml")
# the pretraining recipe, shrunk: 8 videos (6 train, 2 test), 8-frame clips at 32 pixels, 3 iterations of 2 clips
TINY_CLS = {"DATASETS.SYNTHETIC_NUM_VIDEOS": 8, "DATASETS.SYNTHETIC_TEST_VIDEOS": 2, "INPUT.CROP_SIZE": 32,
            "INPUT.SHORT_SIDE_TEST": 32, "INPUT.CLIP_LENGTH": 8, "SOLVER.BATCH_SIZE": 2, "SOLVER.MAX_ITER": 3,
            "SOLVER.WARMUP_ITERS": 1, "SOLVER.CHECKPOINT_PERIOD": 2, "TEST.NUM_CLIPS": 1, "TEST.BATCH_SIZE": 4}
# the detection quick start, shrunk as in tests/test_train_tool.py
TINY_DET = {"DATASETS.SYNTHETIC_NUM_VIDEOS": 6, "DATASETS.SYNTHETIC_TEST_VIDEOS": 2, "INPUT.SHORT_SIDE_TRAIN": "[64]",
            "INPUT.SHORT_SIDE_TEST": 64, "INPUT.CLIP_LENGTH": 4, "SOLVER.BATCH_SIZE": 2, "SOLVER.MAX_ITER": 2,
            "SOLVER.WARMUP_ITERS": 1, "SOLVER.CHECKPOINT_PERIOD": 0, "SOLVER.FREEZE_2D_AT": 0,
            "DATALOADER.NUM_WORKERS": 0, "TEST.BATCH_SIZE": 16, "TEST.VIDEO_MAP": False}


def opts(mapping):
    return [str(x) for kv in mapping.items() for x in kv]


def write_yaml(path, base, keys):
    """A config file ``_BASE_: base`` setting ``keys`` ({"A.B": value}) as nested YAML."""
    tree = {"_BASE_": base}
    for key, value in keys.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value if not (isinstance(value, str) and value.startswith("[")) else json.loads(value)
    import yaml

    path.write_text(yaml.safe_dump(tree))
    return str(path)


def scrambled(model, seed=0):
    """``model`` with every floating tensor (BatchNorm statistics included) set to seeded random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
    return model


# ----------------------------------------------------------------------------------------------- weights_3d.pth
def test_exported_weights_fill_the_detectors_3d_network(tmp_path):
    cfg = load_config(CLS_CONFIG)
    classifier = scrambled(VideoClassifier.from_config(cfg, 7))
    path = str(tmp_path / WEIGHTS_3D_NAME)
    export_weights_3d(classifier, path, cfg=cfg, classes=list("abcdefg"))
    state, meta = load_converted(path)
    assert meta["classes"] == list("abcdefg") and meta["config_digest"] == config_digest(cfg)
    assert meta["dataset"] == "synthetic_clips" and meta["has_head"] is True
    assert {k.split(".")[0] for k in state} == {"backbone", "head"}

    det_cfg = load_config(DET_CONFIG)
    detector = build_action_detector_from_cfg(det_cfg, 6)
    assert load_pretrained_3d(detector.backbone_3d, path, prefix="backbone.", strict=True) == []
    source = classifier.backbone.state_dict()
    loaded = detector.backbone_3d.state_dict()
    assert loaded.keys() <= source.keys() and len(loaded) > 50
    assert all(torch.equal(loaded[k], source[k]) for k in loaded)
    # and through the config, as the detection tool loads it
    detector = build_model(load_config(DET_CONFIG, ["MODEL.WEIGHTS_3D", path]), num_classes=6)
    assert all(torch.equal(v, source[k]) for k, v in detector.backbone_3d.state_dict().items())


# ----------------------------------------------------------------------------------------------- pretraining step
@pytest.fixture
def pretrain_configs(tmp_path):
    """tmp/det/det.yaml naming ../cls/cls.yaml as its PRETRAIN; the classification output in tmp/cls_out."""
    (tmp_path / "det").mkdir()
    (tmp_path / "cls").mkdir()
    cls_file = write_yaml(tmp_path / "cls" / "cls.yaml", CLS_CONFIG, {"OUTPUT_DIR": str(tmp_path / "cls_out")})
    det_file = write_yaml(tmp_path / "det" / "det.yaml", DET_CONFIG,
                          {"MODEL.BACKBONE_3D.PRETRAIN": "../cls/cls.yaml", "OUTPUT_DIR": str(tmp_path / "det_out")})
    return det_file, cls_file, str(tmp_path / "cls_out" / WEIGHTS_3D_NAME)


def export_for(cls_cfg, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    export_weights_3d(VideoClassifier.from_config(cls_cfg, 7), path, cfg=cls_cfg, classes=list("abcdefg"))


def no_training(*args, **kwargs):
    raise AssertionError("train_classifier was called")


def test_classifier_weights_of_another_input_convention_than_the_preset_are_refused(tmp_path):
    # a MIL-NCE config ([0, 1] clips) given a file of the same network whose clips were normalised otherwise
    cfg = load_config(None, ["MODEL.BACKBONE_3D.PRESET", "milnce", "MODEL.BACKBONE_3D.WIDTH", "0.25"])
    other = VideoClassifier.from_config(cfg, num_classes=3)
    other.backbone.input_norm.mean.fill_(114.0)
    path = str(tmp_path / "weights_3d.pth")
    export_weights_3d(other, path, cfg=cfg, classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"MODEL.WEIGHTS_3D .*weights_3d.pth expects clips .*PRESET 'milnce'"):
        classification.build_classifier(load_config(None, ["MODEL.BACKBONE_3D.PRESET", "milnce",
                                                           "MODEL.BACKBONE_3D.WIDTH", "0.25",
                                                           "MODEL.WEIGHTS_3D", path]), num_classes=5)
    same = str(tmp_path / "same.pth")  # the preset's own convention loads, into a new head
    export_weights_3d(VideoClassifier.from_config(cfg, num_classes=3), same, cfg=cfg, classes=["a", "b", "c"])
    model = classification.build_classifier(load_config(None, ["MODEL.BACKBONE_3D.PRESET", "milnce",
                                                               "MODEL.BACKBONE_3D.WIDTH", "0.25",
                                                               "MODEL.WEIGHTS_3D", same]), num_classes=5)
    assert model.head.proj.out_channels == 5


def test_pretraining_reuses_weights_of_the_same_config(pretrain_configs, monkeypatch):
    det_file, cls_file, weights = pretrain_configs
    export_for(load_config(cls_file), weights)
    monkeypatch.setattr(classification, "train_classifier", no_training)
    assert classification.pretrained_weights_3d(load_config(det_file), det_file) == weights


def test_pretraining_refuses_weights_of_another_config(pretrain_configs, monkeypatch):
    det_file, cls_file, weights = pretrain_configs
    export_for(load_config(cls_file, ["SOLVER.MAX_ITER", "7"]), weights)
    before = open(weights, "rb").read()
    monkeypatch.setattr(classification, "train_classifier", no_training)
    with pytest.raises(ConfigError) as info:
        classification.pretrained_weights_3d(load_config(det_file), det_file)
    assert "\n" not in str(info.value) and weights in str(info.value)
    assert open(weights, "rb").read() == before  # never overwritten


def test_pretraining_trains_when_there_are_no_weights(pretrain_configs, monkeypatch):
    det_file, cls_file, weights = pretrain_configs
    calls = []

    def train(cfg, *, resume=False, eval_only=False):
        calls.append((cfg, resume, eval_only))
        return weights

    monkeypatch.setattr(classification, "train_classifier", train)
    assert classification.pretrained_weights_3d(load_config(det_file), det_file) == weights
    assert len(calls) == 1 and calls[0][1:] == (True, False)  # resuming an interrupted pretraining
    assert config_digest(calls[0][0]) == config_digest(load_config(cls_file))


def test_pretraining_config_missing(pretrain_configs):
    det_file, cls_file, _ = pretrain_configs
    os.remove(cls_file)
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE_3D.PRETRAIN: no config .*cls.yaml"):
        classification.pretrained_weights_3d(load_config(det_file), det_file)


def load_train_det():
    spec = importlib.util.spec_from_file_location("train_det_tool", os.path.join(ROOT, "tools/train_det.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_pretrained_3d_when_it_is_not_needed(pretrain_configs, monkeypatch):
    det_file, _, weights = pretrain_configs
    tool = load_train_det()
    monkeypatch.setattr(classification, "pretrained_weights_3d", no_training)
    cfg = load_config(det_file)
    for args in (SimpleNamespace(eval_only=True, resume=False, config_file=det_file),):
        assert tool.with_pretrained_3d(cfg, args).MODEL.WEIGHTS_3D == ""
    given = load_config(det_file, ["MODEL.WEIGHTS", "model.pth"])
    assert tool.with_pretrained_3d(given, SimpleNamespace(eval_only=False, resume=False, config_file=det_file)) \
        is given


def test_with_pretrained_3d_on_resume_with_a_checkpoint_needs_no_pretraining(pretrain_configs, monkeypatch):
    """--resume of a detection run that has a checkpoint: every weight comes from the checkpoint, so the
    classifier is neither trained again (its output removed) nor required to match its config as it is now."""
    det_file, _, weights = pretrain_configs
    tool = load_train_det()
    cfg = load_config(det_file)
    os.makedirs(cfg.OUTPUT_DIR)
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000001.pth")
    torch.save({"model": {}}, os.path.join(cfg.OUTPUT_DIR, "model_0000001.pth"))
    monkeypatch.setattr(classification, "pretrained_weights_3d", no_training)
    args = SimpleNamespace(eval_only=False, resume=True, config_file=det_file)
    assert tool.with_pretrained_3d(cfg, args).MODEL.WEIGHTS_3D == ""
    # without a checkpoint, --resume starts from iteration 0: the pretraining is needed
    os.remove(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    monkeypatch.setattr(classification, "pretrained_weights_3d", lambda det_cfg, config_file: weights)
    assert tool.with_pretrained_3d(cfg, args).MODEL.WEIGHTS_3D == weights


# ----------------------------------------------------------------------------------------------- two processes
class RedMean(nn.Module):
    """Logits (B, 2): the mean red value of each clip and its negative."""

    def forward(self, clips):
        red = clips[:, 0].mean(dim=(1, 2, 3))
        return torch.stack([red, -red], dim=1)


def view_dataset(root):
    import cv2

    paths = []
    for v in range(3):
        folder = os.path.join(root, f"v{v}")
        os.makedirs(folder, exist_ok=True)
        for t in range(1, 9):
            frame = np.zeros((16, 24, 3), np.uint8)
            frame[..., 2] = 10 * v + t  # red (BGR on disk)
            frame[:, :, 1] = np.arange(24)[None, :]
            cv2.imwrite(os.path.join(folder, f"{t:05d}.png"), frame)
        paths.append(folder)
    records = [VideoRecord(video=f"c/v{v}", path=p, label=v % 2) for v, p in enumerate(paths)]
    videos = VideoList(dataset="test", subset="test", classes=["a", "b"], records=records)
    return ViewDataset(videos, clip_length=2, clip_stride=1, crop_size=16, num_clips=1, num_crops=3)


def classify_in_process(root, out_dir):
    from s3d_det.engine.distributed import get_rank

    logits, videos = classify_views(RedMean(), view_dataset(root), batch_size=1, device=torch.device("cpu"))
    np.savez(os.path.join(out_dir, f"rank{get_rank()}.npz"), logits=logits, videos=videos)


def test_classify_views_with_two_processes_gives_every_view_to_each(tmp_path):
    # 3 items (3 videos x 1 clip) of 3 crops over 2 processes: rank 0 takes items 0 and 2, rank 1 item 1
    launch(classify_in_process, 2, args=(str(tmp_path / "frames"), str(tmp_path)), backend="gloo")
    single_logits, single_videos = classify_views(RedMean(), view_dataset(str(tmp_path / "frames")), batch_size=2,
                                                  device=torch.device("cpu"))
    # frames 4 and 5 of 8 (one clip: start 3), red 10 v + 4.5 in every crop
    assert single_videos.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.allclose(single_logits[:, 0], np.repeat([4.5, 14.5, 24.5], 3))
    order = np.argsort(single_videos, kind="stable")
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert got["videos"].dtype.kind == "i" and sorted(got["videos"].tolist()) == single_videos.tolist()
        assert np.allclose(got["logits"][np.argsort(got["videos"], kind="stable")], single_logits[order])


# ----------------------------------------------------------------------------------------------- the tool
def run_tool(tool, *args, datasets, timeout=600):
    # PYTHONPATH: this tree's s3d_det, not an installed one
    env = {**os.environ, "S3D_DET_DATASETS": str(datasets), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, f"tools/{tool}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    datasets = tmp_path_factory.mktemp("datasets")
    out = tmp_path_factory.mktemp("cls") / "out"
    proc = run_tool("train_cls.py", "--config-file", CLS_CONFIG, *opts(TINY_CLS), "OUTPUT_DIR", out,
                    datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return datasets, out, proc


@pytest.mark.slow
def test_train_cls_writes_its_outputs(trained):
    datasets, out, proc = trained
    assert os.path.isfile(datasets / "synthetic_clips" / "meta.json")  # made by the tool under S3D_DET_DATASETS
    assert {"config.yaml", "metrics.json", "cls_results.json", "per_class.txt", "confusion.png", WEIGHTS_3D_NAME,
            "model_final.pth", "last_checkpoint"} <= set(os.listdir(out))
    result = json.load(open(out / "cls_results.json"))
    assert result["dataset"] == "synthetic_clips" and result["num_videos"] > 0
    assert result["classes"] == ["move_left", "move_right", "jump", "wave", "spin", "crouch", "idle"]
    assert 0 <= result["top1"] <= result["top5"] <= 100
    assert f"top-1 {result['top1']:.2f}" in proc.stdout
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    assert any("loss_cls" in r for r in rows) and rows[-1]["top1"] == pytest.approx(result["top1"])
    state, meta = load_converted(str(out / WEIGHTS_3D_NAME))
    final = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(state[k], final[k]) for k in final)
    assert meta["config_digest"] == config_digest(load_config(str(out / "config.yaml")))


@pytest.mark.slow
def test_train_cls_resume_after_a_finished_run_does_not_train_again(trained, tmp_path):
    datasets, out, _ = trained
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = {n: os.stat(copy / n).st_mtime_ns for n in ("model_final.pth", "cls_results.json", "metrics.json")}
    proc = run_tool("train_cls.py", "--config-file", CLS_CONFIG, "--resume", *opts(TINY_CLS), "OUTPUT_DIR", copy,
                    datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout and "iteration 3" in proc.stdout
    assert {n: os.stat(copy / n).st_mtime_ns for n in before} == before
    assert os.path.isfile(copy / WEIGHTS_3D_NAME)


@pytest.mark.slow
def test_train_cls_eval_only_reproduces_the_training_evaluation(trained, tmp_path):
    datasets, out, _ = trained
    proc = run_tool("train_cls.py", "--config-file", CLS_CONFIG, "--eval-only", *opts(TINY_CLS),
                    "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path / "eval", datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained_result = json.load(open(out / "cls_results.json"))
    result = json.load(open(tmp_path / "eval" / "cls_results.json"))
    assert result["top1"] == trained_result["top1"] and result["top5"] == trained_result["top5"]
    assert not os.path.exists(tmp_path / "eval" / WEIGHTS_3D_NAME)


@pytest.mark.slow
def test_train_cls_eval_only_with_two_processes_scores_every_view(trained, tmp_path):
    datasets, out, _ = trained
    proc = run_tool("train_cls.py", "--config-file", CLS_CONFIG, "--eval-only", "--num-gpus", 2, *opts(TINY_CLS),
                    "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path / "eval", datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained_result = json.load(open(out / "cls_results.json"))
    result = json.load(open(tmp_path / "eval" / "cls_results.json"))
    assert result["num_videos"] == trained_result["num_videos"]
    assert result["top1"] == pytest.approx(trained_result["top1"]) and result["top5"] == pytest.approx(
        trained_result["top5"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["frame", "name", "lists", "key"])
def test_train_cls_bad_input_is_one_line(trained, tmp_path, case):
    datasets, _, _ = trained
    extra = {"name": ["DATASETS.NAME", "nonsense"],
             "lists": ["DATASETS.NAME", "ucf101", "DATASETS.ROOT", tmp_path / "empty"],
             "key": ["SOLVER.NOPE", "1"], "frame": []}[case]
    expected = {"name": "DATASETS.NAME='nonsense'", "lists": str(tmp_path / "empty"), "key": "SOLVER.NOPE"}
    if case == "lists":
        (tmp_path / "empty").mkdir()
    if case == "frame":  # a truncated frame of a training clip
        datasets = tmp_path / "datasets"
        shutil.copytree(trained[0], datasets)
        line = open(datasets / "synthetic_clips" / "ucfTrainTestlist" / "trainlist01.txt").readline().split()[0]
        folder = datasets / "synthetic_clips" / "Frames" / line[:-4]
        for frame in folder.iterdir():  # every frame: the clip read is drawn at random
            frame.write_bytes(frame.read_bytes()[:200])
        expected["frame"] = str(folder)
    proc = run_tool("train_cls.py", "--config-file", CLS_CONFIG, *opts(TINY_CLS), "SOLVER.MAX_ITER", 40,
                    *extra, "OUTPUT_DIR", tmp_path / "out", datasets=datasets)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected[case] in errors[0], proc.stderr[-2000:]


@pytest.mark.slow
def test_detection_pretrains_then_reuses_its_3d_network(tmp_path):
    datasets = tmp_path / "datasets"
    (tmp_path / "det").mkdir()
    (tmp_path / "cls").mkdir()
    write_yaml(tmp_path / "cls" / "cls.yaml", CLS_CONFIG, {**TINY_CLS, "OUTPUT_DIR": str(tmp_path / "cls_out")})
    det_file = write_yaml(tmp_path / "det" / "det.yaml", DET_CONFIG, {"MODEL.BACKBONE_3D.PRETRAIN": "../cls/cls.yaml"})
    weights = tmp_path / "cls_out" / WEIGHTS_3D_NAME
    proc = run_tool("train_det.py", "--config-file", det_file, *opts(TINY_DET), "OUTPUT_DIR", tmp_path / "det1",
                    datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pretraining the 3D network" in proc.stdout and os.path.isfile(weights)
    assert os.path.isfile(datasets / "synthetic_clips" / "meta.json")
    assert load_config(str(tmp_path / "det1" / "config.yaml")).MODEL.WEIGHTS_3D == str(weights)
    mtime = os.stat(weights).st_mtime_ns
    proc = run_tool("train_det.py", "--config-file", det_file, *opts(TINY_DET), "OUTPUT_DIR", tmp_path / "det2",
                    datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pretraining the 3D network" not in proc.stdout and os.stat(weights).st_mtime_ns == mtime
    assert f"pretrained 3D network: {weights} (reused" in proc.stdout


def test_cls_dataset_keys_are_named_in_errors(tmp_path):
    from s3d_det.engine.classification import build_cls_datasets

    videos = view_dataset(str(tmp_path / "frames")).videos
    cfg = load_config(CLS_CONFIG, ["INPUT.SHORT_SIDE_TEST", "32", "INPUT.CROP_SIZE", "64"])
    with pytest.raises(ConfigError) as info:
        build_cls_datasets(cfg, videos, videos)
    message = str(info.value)
    assert "INPUT.SHORT_SIDE_TEST" in message and "INPUT.CROP_SIZE" in message and "32" in message
    cfg = load_config(CLS_CONFIG, ["INPUT.SHORT_SIDE_TEST", "0", "INPUT.CROP_SIZE", "16", "TEST.NUM_CROPS", "3"])
    _, test_set = build_cls_datasets(cfg, videos, videos)  # 0: the crop size
    assert test_set[0]["clips"].shape == (3, 3, 8, 16, 16)
    with pytest.raises(ConfigError, match="TEST.NUM_CROPS"):
        build_cls_datasets(load_config(CLS_CONFIG, ["TEST.NUM_CROPS", "2"]), videos, videos)


def test_pretraining_does_not_resume_a_run_of_another_config(pretrain_configs, monkeypatch):
    """No weights yet, but OUTPUT_DIR holds a checkpoint of a run of another config: resuming it would export its
    weights as this config's."""
    det_file, cls_file, weights = pretrain_configs
    out = os.path.dirname(weights)
    os.makedirs(out)
    other = load_config(cls_file, ["SOLVER.MAX_ITER", "7"])
    (open(os.path.join(out, "config.yaml"), "w")).write(other.dump())
    open(os.path.join(out, "last_checkpoint"), "w").write("model_0000001.pth")
    torch.save({"model": {}}, os.path.join(out, "model_0000001.pth"))
    monkeypatch.setattr(classification, "train_classifier", no_training)
    with pytest.raises(ConfigError) as info:
        classification.pretrained_weights_3d(load_config(det_file), det_file)
    assert "\n" not in str(info.value) and os.path.join(out, "config.yaml") in str(info.value)
    # the same config: the interrupted pretraining resumes
    (open(os.path.join(out, "config.yaml"), "w")).write(load_config(cls_file).dump())
    calls = []
    monkeypatch.setattr(classification, "train_classifier", lambda cfg, resume: calls.append(resume) or weights)
    assert classification.pretrained_weights_3d(load_config(det_file), det_file) == weights and calls == [True]


@pytest.mark.slow
def test_flow_classifier_trains_and_two_stream_evaluation_fuses_it(trained, tmp_path):
    """A flow classifier trains on the clips' flow (made on first use); a two-stream config evaluates both streams
    and their fusion: weights [1, 0] of the logits give the RGB classifier's result, [0, 1] of the
    probabilities the flow classifier's."""
    datasets, out, _ = trained
    flow_cfg = write_yaml(tmp_path / "flow.yaml", os.path.join(ROOT, "configs/cls/synthetic/s3dg_tiny_flow.yaml"),
                          {**TINY_CLS, "OUTPUT_DIR": str(tmp_path / "flow")})
    proc = run_tool("train_cls.py", "--config-file", flow_cfg, datasets=datasets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isdir(datasets / "synthetic_clips" / "Flow_dis")
    flow_result = json.load(open(tmp_path / "flow" / "cls_results.json"))
    rgb_result = json.load(open(out / "cls_results.json"))
    for method, weights, expected in (("logits", "[1.0, 0.0]", rgb_result), ("softmax", "[0.0, 1.0]", flow_result)):
        two = write_yaml(tmp_path / "two.yaml", CLS_CONFIG,
                         {**TINY_CLS, "MODEL.WEIGHTS": str(out / "model_final.pth"),
                          "OUTPUT_DIR": str(tmp_path / method), "MODEL.TWO_STREAM.FLOW_CONFIG": "flow.yaml",
                          "MODEL.TWO_STREAM.WEIGHTS": weights, "MODEL.TWO_STREAM.CLS_FUSION": method})
        proc = run_tool("train_cls.py", "--config-file", two, "--eval-only", datasets=datasets)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.load(open(tmp_path / method / "cls_results.json"))
        assert result["fusion"] == method and result["top1"] == pytest.approx(expected["top1"])
        assert result["streams"]["rgb"]["top1"] == pytest.approx(rgb_result["top1"])
        assert result["streams"]["flow"]["top1"] == pytest.approx(flow_result["top1"])
        assert "fused: top-1" in proc.stdout
