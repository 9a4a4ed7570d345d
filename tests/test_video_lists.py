"""The official video-classification list readers (s3d_det/data/video_lists.py), on tiny hand-made copies of each
dataset's official layout. Video files are empty: the readers only look at names."""
import json
import os

import pytest

from s3d_det.data.errors import DataError
from s3d_det.data.video_lists import (
    VideoList,
    VideoRecord,
    read_hmdb51,
    read_kinetics,
    read_ssv2,
    read_ucf101,
    read_video_list,
)


def write(path, text="", newline="\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text.replace("\n", newline))
    return path


def touch(*paths):
    for path in paths:
        write(path)


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---- UCF101 -----------------------------------------------------------------------------------------------------

UCF_VIDEOS = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01",
              "Archery/v_Archery_g08_c02", "Archery/v_Archery_g01_c01",
              "HandstandPushups/v_HandStandPushups_g08_c01", "HandstandPushups/v_HandStandPushups_g01_c03"]


def ucf101(root, *, lists_dir="ucfTrainTestlist", videos_dir="UCF-101", split=1, crlf=True):
    """The official archives as they unpack (CRLF line ends, like the real lists)."""
    nl = "\r\n" if crlf else "\n"
    lists = os.path.join(root, lists_dir) if lists_dir else root
    write(os.path.join(lists, "classInd.txt"), "1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n", nl)
    write(os.path.join(lists, f"trainlist0{split}.txt"),
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 3\n"
          "Archery/v_Archery_g08_c02.avi 2\n", nl)
    write(os.path.join(lists, f"testlist0{split}.txt"),
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n"
          "HandstandPushups/v_HandStandPushups_g01_c03.avi\n\n", nl)
    videos = os.path.join(root, videos_dir) if videos_dir else root
    touch(*(os.path.join(videos, v + ".avi") for v in UCF_VIDEOS))
    return lists


def test_ucf101_official_layout(tmp_path):
    root = str(tmp_path)
    lists = ucf101(root)
    os.makedirs(os.path.join(root, "Frames", "Archery", "v_Archery_g08_c02"))  # a frame folder wins over the file
    classes = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    v = os.path.join(root, "UCF-101")
    assert read_ucf101(root, split=1, subset="train") == VideoList(
        dataset="ucf101", subset="train", classes=classes, hflip=True, missing=[],
        records=[VideoRecord("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01",
                             os.path.join(v, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01.avi"), 0),
                 VideoRecord("HandstandPushups/v_HandStandPushups_g08_c01",
                             os.path.join(v, "HandstandPushups", "v_HandStandPushups_g08_c01.avi"), 2),
                 VideoRecord("Archery/v_Archery_g08_c02", os.path.join(root, "Frames", "Archery", "v_Archery_g08_c02"),
                             1)],
        sources=[os.path.join(lists, "classInd.txt"), os.path.join(lists, "trainlist01.txt")])
    assert read_ucf101(root, split=1, subset="test") == VideoList(
        dataset="ucf101", subset="test", classes=classes, hflip=True,
        records=[VideoRecord("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01",
                             os.path.join(v, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01.avi"), 0),
                 VideoRecord("Archery/v_Archery_g01_c01", os.path.join(v, "Archery", "v_Archery_g01_c01.avi"), 1),
                 VideoRecord("HandstandPushups/v_HandStandPushups_g01_c03",
                             os.path.join(v, "HandstandPushups", "v_HandStandPushups_g01_c03.avi"), 2)],
        sources=[os.path.join(lists, "classInd.txt"), os.path.join(lists, "testlist01.txt")])


def test_ucf101_lists_in_root_videos_in_videos_folder_split3(tmp_path):
    root = str(tmp_path)
    ucf101(root, lists_dir="", videos_dir="Videos", split=3, crlf=False)
    got = read_video_list("ucf101", root, split=3, subset="test")
    assert [(r.video, r.label) for r in got.records] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 0), ("Archery/v_Archery_g01_c01", 1),
        ("HandstandPushups/v_HandStandPushups_g01_c03", 2)]
    assert got.records[1].path == os.path.join(root, "Videos", "Archery", "v_Archery_g01_c01.avi")
    assert got.sources == [os.path.join(root, "classInd.txt"), os.path.join(root, "testlist03.txt")]


def test_ucf101_missing_list_names_every_path(tmp_path):
    root = str(tmp_path)
    ucf101(root)
    with pytest.raises(FileNotFoundError) as e:
        read_ucf101(root, split=2, subset="train")
    msg = one_line(e)
    assert os.path.join(root, "trainlist02.txt") in msg
    assert os.path.join(root, "ucfTrainTestlist", "trainlist02.txt") in msg


@pytest.mark.parametrize("file, line, text, expect", [
    ("trainlist01.txt", 2, "HandstandPushups/v_HandStandPushups_g08_c01.avi", "expected '<Class>/<video>.avi <label>'"),
    ("trainlist01.txt", 2, "HandstandPushups/v_HandStandPushups_g08_c01.avi 4", "label '4'"),
    ("trainlist01.txt", 2, "HandstandPushups/v_HandStandPushups_g08_c01.avi 2", "disagrees with its class folder"),
    ("trainlist01.txt", 3, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "already listed on line 1"),
    ("testlist01.txt", 2, "Archer/v_Archery_g01_c01.avi", "class 'Archer'"),
    ("testlist01.txt", 2, "v_Archery_g01_c01.avi", "expected '<Class>/<video>.avi'"),
    ("classInd.txt", 2, "3 Archery", "class index 3; expected 2"),
    ("classInd.txt", 2, "Archery", "expected '<index> <ClassName>'"),
])
def test_ucf101_bad_line(tmp_path, file, line, text, expect):
    root = str(tmp_path)
    lists = ucf101(root)
    path = os.path.join(lists, file)
    lines = open(path, newline="").read().split("\r\n")
    lines[line - 1] = text
    write(path, "\r\n".join(lines))
    subset = "test" if file == "testlist01.txt" else "train"
    with pytest.raises(DataError) as e:
        read_ucf101(root, split=1, subset=subset)
    msg = one_line(e)
    assert f"{path} line {line}" in msg and expect in msg


def test_ucf101_missing_video_is_an_error_naming_it(tmp_path):
    root = str(tmp_path)
    ucf101(root)
    os.remove(os.path.join(root, "UCF-101", "Archery", "v_Archery_g01_c01.avi"))
    with pytest.raises(FileNotFoundError) as e:
        read_ucf101(root, split=1, subset="test")
    msg = one_line(e)
    assert "1 of the 3 videos" in msg and "'Archery/v_Archery_g01_c01'" in msg
    assert os.path.join(root, "UCF-101", "Archery", "v_Archery_g01_c01.avi") in msg


@pytest.mark.parametrize("kw", [dict(split=0, subset="train"), dict(split=4, subset="train"),
                                dict(split="1", subset="train"), dict(split=1, subset="val")])
def test_bad_split_or_subset(tmp_path, kw):
    for reader in (read_ucf101, read_hmdb51):
        with pytest.raises(ValueError) as e:
            reader(str(tmp_path), **kw)
        assert "split must be" in one_line(e) or "subset must be" in one_line(e)
    with pytest.raises(ValueError):
        read_ssv2(str(tmp_path), subset="validation")
    with pytest.raises(ValueError):
        read_kinetics(str(tmp_path), subset="val")


# ---- HMDB-51 ----------------------------------------------------------------------------------------------------

HMDB_SPLIT1 = {  # written in this order; classes must come out sorted
    "wave": "20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0.avi 1 \nwave_and_say_hi_wave_u_nm_np1_fr_med_0.avi 2 \n"
            "Wave_hello_wave_u_cm_np1_fr_bad_1.avi 0 \n",
    "brush_hair": "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
                  "American_History_X_brush_hair_h_nm_np1_le_goo_1.avi 0 \n"
                  "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi 2 \n",
    "cartwheel": "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 2 \n"
                 "Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi 1 \n",
}


def hmdb51(root, *, splits_dir="testTrainMulti_7030_splits", videos_dir="hmdb51_org"):
    splits = os.path.join(root, splits_dir) if splits_dir else root
    for name, text in HMDB_SPLIT1.items():
        write(os.path.join(splits, f"{name}_test_split1.txt"), text)
        write(os.path.join(splits, f"{name}_test_split2.txt"), "other.avi 1\n")  # never read for split 1
        for line in text.splitlines():
            touch(os.path.join(root, videos_dir, name, line.split()[0]) if videos_dir
                  else os.path.join(root, name, line.split()[0]))
    return splits


def test_hmdb51_official_layout_and_unused_videos(tmp_path):
    root = str(tmp_path)
    splits = hmdb51(root)
    v = os.path.join(root, "hmdb51_org")
    classes = ["brush_hair", "cartwheel", "wave"]
    sources = [os.path.join(splits, f"{c}_test_split1.txt") for c in classes]
    assert read_hmdb51(root, split=1, subset="train") == VideoList(
        dataset="hmdb51", subset="train", classes=classes, hflip=True, sources=sources,
        records=[VideoRecord("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0",
                             os.path.join(v, "brush_hair", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi"), 0),
                 VideoRecord("cartwheel/Acrobacias_cartwheel_f_cm_np1_ri_bad_0",
                             os.path.join(v, "cartwheel", "Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi"), 1),
                 VideoRecord("wave/20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0",
                             os.path.join(v, "wave", "20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0.avi"), 2)])
    test = read_hmdb51(root, split=1, subset="test")
    assert [(r.video, r.label) for r in test.records] == [
        ("brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0", 0),
        ("cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0", 1),
        ("wave/wave_and_say_hi_wave_u_nm_np1_fr_med_0", 2)]
    # the '0' videos (American_History_X..., Wave_hello...) are in neither subset
    everything = {r.video for r in test.records} | {r.video for r in read_hmdb51(root, split=1, subset="train").records}
    assert "brush_hair/American_History_X_brush_hair_h_nm_np1_le_goo_1" not in everything
    assert "wave/Wave_hello_wave_u_cm_np1_fr_bad_1" not in everything


def test_hmdb51_flat_layout_and_frames(tmp_path):
    root = str(tmp_path)
    hmdb51(root, splits_dir="", videos_dir="")
    frames = os.path.join(root, "Frames", "wave", "wave_and_say_hi_wave_u_nm_np1_fr_med_0")
    os.makedirs(frames)
    got = read_video_list("hmdb51", root, split=1, subset="test")
    assert [r.path for r in got.records] == [
        os.path.join(root, "brush_hair", "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi"),
        os.path.join(root, "cartwheel", "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi"), frames]


@pytest.mark.parametrize("text, expect", [
    ("Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi 3", "expected '<video>.avi 0|1|2'"),
    ("Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi", "expected '<video>.avi 0|1|2'"),
    ("Acrobacias_cartwheel_f_cm_np1_ri_bad_0.mp4 1", "expected '<video>.avi 0|1|2'"),
    ("(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 1", "already listed on line 1"),
])
def test_hmdb51_bad_line(tmp_path, text, expect):
    root = str(tmp_path)
    splits = hmdb51(root)
    path = write(os.path.join(splits, "cartwheel_test_split1.txt"),
                 "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 2 \n" + text + "\n")
    with pytest.raises(DataError) as e:
        read_hmdb51(root, split=1, subset="train")
    msg = one_line(e)
    assert f"{path} line 2" in msg and expect in msg


def test_hmdb51_missing_lists_and_videos(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        read_hmdb51(root, split=1, subset="train")
    msg = one_line(e)
    assert os.path.join(root, "testTrainMulti_7030_splits", "<class>_test_split1.txt") in msg
    assert os.path.join(root, "<class>_test_split1.txt") in msg
    hmdb51(root)
    os.remove(os.path.join(root, "hmdb51_org", "cartwheel", "Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi"))
    read_hmdb51(root, split=1, subset="test")  # only train lists it
    with pytest.raises(FileNotFoundError) as e:
        read_hmdb51(root, split=1, subset="train")
    assert "'cartwheel/Acrobacias_cartwheel_f_cm_np1_ri_bad_0'" in one_line(e)


# ---- Kinetics ---------------------------------------------------------------------------------------------------

K_TRAIN = ('label,youtube_id,time_start,time_end,split,is_cc\n'
           '"passing American football (in game)",-3B32lodo2M,59,69,train,0\n'
           'abseiling,--0NTAs-fA0,29,39,train,0\n'
           '"dancing, ballet",zzz_Aa1b2c3,0,10,train,1\n'
           'zumba,ZUMBA123456,120,130,train,0\n'
           'abseiling,missing0001,5,15,train,0\n')
K_VAL = ('label,youtube_id,time_start,time_end,split\n'
         'abseiling,val00000001,3.0,13.0,validate\n'
         '"dancing, ballet",val00000002,11,21,validate\n'
         '"passing American football (in game)",val00000003,0,10,validate\n')


def kinetics(root):
    write(os.path.join(root, "annotations", "train.csv"), K_TRAIN)
    write(os.path.join(root, "annotations", "validate.csv"), K_VAL)
    write(os.path.join(root, "annotations", "test.csv"), "youtube_id,time_start,time_end,split\nabc,0,10,test\n")
    touch(os.path.join(root, "train", "passing_American_football_(in_game)", "-3B32lodo2M_000059_000069.mp4"),
          os.path.join(root, "train", "abseiling", "--0NTAs-fA0_000029_000039.mp4"),
          os.path.join(root, "train", "zumba", "ZUMBA123456_000120_000130.mp4"),
          os.path.join(root, "val", "val00000001_000003_000013.mp4"),
          os.path.join(root, "val", "val00000003_000000_000010.mp4"),
          os.path.join(root, "val", "notes.txt"))
    os.makedirs(os.path.join(root, "Frames", "zzz_Aa1b2c3_000000_000010"))  # frames instead of the video
    os.makedirs(os.path.join(root, "Frames", "val00000002_000011_000021"))


K_CLASSES = ["abseiling", "dancing, ballet", "passing American football (in game)", "zumba"]


def test_kinetics_official_layout(tmp_path):
    root = str(tmp_path)
    kinetics(root)
    ann = os.path.join(root, "annotations")
    assert read_kinetics(root, subset="train") == VideoList(
        dataset="kinetics", subset="train", classes=K_CLASSES, hflip=True,
        records=[VideoRecord("-3B32lodo2M_000059_000069", os.path.join(
                     root, "train", "passing_American_football_(in_game)", "-3B32lodo2M_000059_000069.mp4"), 2),
                 VideoRecord("--0NTAs-fA0_000029_000039",
                             os.path.join(root, "train", "abseiling", "--0NTAs-fA0_000029_000039.mp4"), 0),
                 VideoRecord("zzz_Aa1b2c3_000000_000010", os.path.join(root, "Frames", "zzz_Aa1b2c3_000000_000010"),
                             1),
                 VideoRecord("ZUMBA123456_000120_000130",
                             os.path.join(root, "train", "zumba", "ZUMBA123456_000120_000130.mp4"), 3)],
        missing=["missing0001_000005_000015"], sources=[os.path.join(ann, "train.csv")])
    # the validation CSV lacks 'zumba': the classes still come from the train CSV
    assert read_video_list("kinetics", root, subset="test") == VideoList(
        dataset="kinetics", subset="test", classes=K_CLASSES, hflip=True,
        records=[VideoRecord("val00000001_000003_000013", os.path.join(root, "val", "val00000001_000003_000013.mp4"),
                             0),
                 VideoRecord("val00000002_000011_000021", os.path.join(root, "Frames", "val00000002_000011_000021"),
                             1),
                 VideoRecord("val00000003_000000_000010", os.path.join(root, "val", "val00000003_000000_000010.mp4"),
                             2)],
        missing=[], sources=[os.path.join(ann, "validate.csv"), os.path.join(ann, "train.csv")])


def test_kinetics_test_csv_without_labels_is_refused(tmp_path):
    root = str(tmp_path)
    kinetics(root)
    path = os.path.join(root, "annotations", "test.csv")
    with pytest.raises(DataError) as e:
        read_kinetics(root, subset="test", csv=path)
    msg = one_line(e)
    assert path in msg and "no 'label' column" in msg


def test_kinetics_test_needs_the_train_csv(tmp_path):
    root = str(tmp_path)
    kinetics(root)
    moved = os.path.join(root, "elsewhere.csv")
    os.rename(os.path.join(root, "annotations", "train.csv"), moved)
    with pytest.raises(FileNotFoundError) as e:
        read_kinetics(root, subset="test")
    msg = one_line(e)
    assert "class list" in msg and os.path.join(root, "annotations", "train.csv") in msg
    assert os.path.join(root, "train.csv") in msg
    got = read_kinetics(root, subset="test", train_csv=moved)
    assert got.classes == K_CLASSES and got.sources[1] == moved


@pytest.mark.parametrize("row, expect", [
    ('skydiving,val00000004,0,10,validate', "label 'skydiving' is not a class of the train CSV"),
    ('abseiling,val00000004,0.5,10,validate', "time_start '0.5'; expected whole seconds"),
    ('abseiling,val00000004,10,x,validate', "time_end 'x'"),
    ('abseiling,val00000004,10,10,validate', "time_end 10 is not after time_start 10"),
    ('abseiling,val00000004,0,10', "4 fields; expected 5"),
    (',val00000004,0,10,validate', "empty label"),
])
def test_kinetics_bad_row(tmp_path, row, expect):
    root = str(tmp_path)
    kinetics(root)
    path = write(os.path.join(root, "annotations", "validate.csv"), K_VAL + row + "\n")
    with pytest.raises(DataError) as e:
        read_kinetics(root, subset="test")
    msg = one_line(e)
    assert f"{path} line 5" in msg and expect in msg


def test_kinetics_bad_header_missing_csv_and_duplicate_files(tmp_path):
    root = str(tmp_path)
    kinetics(root)
    path = write(os.path.join(root, "annotations", "validate.csv"), "label,youtube,start,end\n")
    with pytest.raises(DataError) as e:
        read_kinetics(root, subset="test")
    assert f"{path} line 1" in one_line(e) and "lacks youtube_id, time_start, time_end" in one_line(e)
    os.remove(path)
    with pytest.raises(FileNotFoundError) as e:
        read_kinetics(root, subset="test")
    for name in ("validate.csv", "val.csv", "annotations/validate.csv", "annotations/val.csv"):
        assert os.path.join(root, name) in one_line(e)
    first = os.path.join(root, "train", "abseiling", "--0NTAs-fA0_000029_000039.mp4")
    second = os.path.join(root, "videos_copy", "--0NTAs-fA0_000029_000039.mp4")
    touch(second)
    with pytest.raises(DataError) as e:
        read_kinetics(root, subset="train")
    assert first in one_line(e) and second in one_line(e)


# ---- Something-Something v2 -------------------------------------------------------------------------------------

SSV2_LABELS = {"Approaching something with your camera": "0", "Holding something next to something": "1",
               "Pushing something from left to right": "2"}
SSV2_TRAIN = [
    {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
     "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
    {"id": "42326", "label": "pushing cup from left to right", "template": "Pushing [something] from left to right",
     "placeholders": ["cup"]},
    {"id": "100904", "label": "approaching phone with your camera",
     "template": "Approaching [something] with your camera", "placeholders": ["phone"]},
]
SSV2_VAL = [{"id": "74225", "label": "holding a pen next to a cup",
             "template": "Holding [something] next to [something]", "placeholders": ["a pen", "a cup"]}]


def ssv2(root, *, qualcomm=False, videos_dir="20bn-something-something-v2"):
    names = ("labels/labels.json", "labels/train.json", "labels/validation.json") if qualcomm else (
        "something-something-v2-labels.json", "something-something-v2-train.json",
        "something-something-v2-validation.json")
    for name, data in zip(names, (SSV2_LABELS, SSV2_TRAIN, SSV2_VAL)):
        write(os.path.join(root, name), json.dumps(data))
    for entry in SSV2_TRAIN + SSV2_VAL:
        touch(os.path.join(root, videos_dir, entry["id"] + ".webm"))
    return [os.path.join(root, n) for n in names]


def test_ssv2_template_to_label_and_no_flip(tmp_path):
    root = str(tmp_path)
    labels, train, val = ssv2(root)
    v = os.path.join(root, "20bn-something-something-v2")
    assert read_ssv2(root, subset="train") == VideoList(
        dataset="ssv2", subset="train", hflip=False, sources=[labels, train],
        classes=["Approaching something with your camera", "Holding something next to something",
                 "Pushing something from left to right"],
        records=[VideoRecord("78687", os.path.join(v, "78687.webm"), 1),
                 VideoRecord("42326", os.path.join(v, "42326.webm"), 2),
                 VideoRecord("100904", os.path.join(v, "100904.webm"), 0)])
    got = read_video_list("ssv2", root, split=1, subset="test")
    assert got.records == [VideoRecord("74225", os.path.join(v, "74225.webm"), 1)]
    assert got.sources == [labels, val] and got.hflip is False


def test_ssv2_labels_folder_and_videos_folder(tmp_path):
    root = str(tmp_path)
    labels, _, val = ssv2(root, qualcomm=True, videos_dir="Videos")
    got = read_ssv2(root, subset="test")
    assert got.records == [VideoRecord("74225", os.path.join(root, "Videos", "74225.webm"), 1)]
    assert got.sources == [labels, val]


@pytest.mark.parametrize("entry, expect", [
    ({"id": "5", "template": "Holding [something] next to [nothing]"},
     "label 'Holding something next to nothing'"),
    ({"id": "5"}, "expected an object with string 'id' and 'template'"),
    ("5", "expected an object with string 'id' and 'template'"),
    ({"id": "78687", "template": "Holding [something] next to [something]"}, "already listed as entry 0"),
])
def test_ssv2_bad_entry(tmp_path, entry, expect):
    root = str(tmp_path)
    _, train, _ = ssv2(root)
    touch(os.path.join(root, "20bn-something-something-v2", "5.webm"))
    write(train, json.dumps(SSV2_TRAIN + [entry]))
    with pytest.raises(DataError) as e:
        read_ssv2(root, subset="train")
    msg = one_line(e)
    assert f"{train} entry 3" in msg and expect in msg


def test_ssv2_bad_labels_json_and_missing_video(tmp_path):
    root = str(tmp_path)
    labels, train, _ = ssv2(root)
    write(labels, json.dumps({"a": "0", "b": "2"}))
    with pytest.raises(DataError) as e:
        read_ssv2(root, subset="train")
    assert labels in one_line(e) and "no class has index 1" in one_line(e)
    write(labels, '{"a": "0",\n "b": }')
    with pytest.raises(DataError) as e:
        read_ssv2(root, subset="train")
    assert f"{labels} line 2" in one_line(e)
    write(labels, json.dumps(SSV2_LABELS))
    os.remove(os.path.join(root, "20bn-something-something-v2", "42326.webm"))
    with pytest.raises(FileNotFoundError) as e:
        read_ssv2(root, subset="train")
    assert "'42326'" in one_line(e) and os.path.join(root, "Videos", "42326.webm") in one_line(e)
    os.remove(train)
    with pytest.raises(FileNotFoundError) as e:
        read_ssv2(root, subset="train")
    assert train in one_line(e) and os.path.join(root, "labels", "train.json") in one_line(e)


# ---- dispatch ---------------------------------------------------------------------------------------------------

def test_read_video_list_names_and_splits(tmp_path):
    with pytest.raises(ValueError) as e:
        read_video_list("ucf-101", str(tmp_path), split=1, subset="train")
    assert "ucf101, hmdb51, kinetics, ssv2" in one_line(e)
    with pytest.raises(ValueError) as e:
        read_video_list("kinetics", str(tmp_path), split=2, subset="train")
    assert "one official split" in one_line(e)


# ---- input the readers must refuse, not half-read ------------------------------------------------------------

def test_list_not_utf8_names_file_and_line(tmp_path):
    root = str(tmp_path)
    lists = ucf101(root)
    path = os.path.join(lists, "testlist01.txt")
    with open(path, "ab") as f:
        f.write(b"Archery/v_Archery_g02_c01.avi\r\nArchery/v_Arch\xe9ry_g03_c01.avi\r\n")
    with pytest.raises(DataError) as e:
        read_ucf101(root, split=1, subset="test")
    assert f"{path} line 6" in one_line(e) and "UTF-8" in one_line(e)  # line 4 is blank
    kinetics(root)
    path = os.path.join(root, "annotations", "validate.csv")
    with open(path, "ab") as f:
        f.write(b"abseiling,\xff\xfe,0,10,validate\n")
    with pytest.raises(DataError) as e:
        read_kinetics(root, subset="test")
    assert path in one_line(e) and "UTF-8" in one_line(e)


def test_kinetics_infinite_time_is_a_data_error(tmp_path):
    root = str(tmp_path)
    kinetics(root)
    path = write(os.path.join(root, "annotations", "validate.csv"), K_VAL + "abseiling,val00000004,0,inf,validate\n")
    with pytest.raises(DataError) as e:
        read_kinetics(root, subset="test")
    assert f"{path} line 5" in one_line(e) and "time_end 'inf'" in one_line(e)


def test_kinetics_no_video_found_at_all_is_an_error(tmp_path):
    """A wrong root (or videos not yet downloaded) would otherwise give an empty list and 100% 'missing'."""
    root = str(tmp_path / "data")
    kinetics(root)
    with pytest.raises(FileNotFoundError) as e:
        read_kinetics(str(tmp_path / "elsewhere"), subset="test", csv=os.path.join(root, "annotations", "validate.csv"),
                      train_csv=os.path.join(root, "annotations", "train.csv"))
    msg = one_line(e)
    assert "none of the 3 videos" in msg and str(tmp_path / "elsewhere") in msg


def test_empty_lists_are_errors(tmp_path):
    root = str(tmp_path)
    lists = ucf101(root)
    path = write(os.path.join(lists, "testlist01.txt"), "\r\n")
    with pytest.raises(DataError) as e:
        read_ucf101(root, split=1, subset="test")
    assert path in one_line(e) and "no videos" in one_line(e)
    hmdb = str(tmp_path / "hmdb")
    splits = hmdb51(hmdb)
    for name in HMDB_SPLIT1:  # every video unused or train: the test subset would be empty
        write(os.path.join(splits, f"{name}_test_split1.txt"), HMDB_SPLIT1[name].replace(" 2 ", " 0 "))
    with pytest.raises(DataError) as e:
        read_hmdb51(hmdb, split=1, subset="test")
    assert "no videos" in one_line(e) and "flag 2" in one_line(e)
    ss = str(tmp_path / "ssv2")
    _, _, val = ssv2(ss)
    write(val, "[]")
    with pytest.raises(DataError) as e:
        read_ssv2(ss, subset="test")
    assert val in one_line(e) and "no entries" in one_line(e)


def test_kinetics_train_csv_names_the_train_list(tmp_path):
    root = str(tmp_path)
    kinetics(root)
    moved = os.path.join(root, "k400_train.csv")
    os.rename(os.path.join(root, "annotations", "train.csv"), moved)
    got = read_kinetics(root, subset="train", train_csv=moved)
    assert got.sources == [moved] and got.classes == K_CLASSES and len(got.records) == 4
    with pytest.raises(ValueError) as e:
        read_kinetics(root, subset="train", csv=os.path.join(root, "annotations", "validate.csv"), train_csv=moved)
    assert "train_csv" in one_line(e)
