from __future__ import annotations

import json
from pathlib import Path

import pytest

from stg_cli.errors import UserError
from stg_cli.text.captions import Caption, load_captions, read_captions


def test_howto100m_json(tmp_path: Path) -> None:
    data = {
        "vidA": {"start": [5.0, 0.5, 9], "end": [7.5, 3.0, 12], "text": ["Crack the EGG!", "um hello", ""]},
        "vidB": {"start": [1], "end": [2], "text": ["pour milk"]},
    }
    (tmp_path / "caps.json").write_text(json.dumps(data))
    result = read_captions(tmp_path / "caps.json")
    assert result.captions["vidA"] == [Caption(0.5, 3.0, "hello"), Caption(5.0, 7.5, "crack the egg")]
    assert result.captions["vidB"] == [Caption(1.0, 2.0, "pour milk")]
    assert result.stats.kept == 3 and result.stats.skipped["empty"] == 1 and result.stats.videos == 2
    assert set(load_captions(tmp_path / "caps.json", video_ids=["vidB"])) == {"vidB"}


def test_json_with_mismatched_columns_is_reported_not_fatal(tmp_path: Path) -> None:
    data = {
        "ok": {"start": [0], "end": [1], "text": ["stir"]},
        "bad": {"start": [0, 1], "end": [1], "text": ["x"]},
    }
    (tmp_path / "caps.json").write_text(json.dumps(data))
    result = read_captions(tmp_path / "caps.json")
    assert list(result.captions) == ["ok"]
    assert len(result.stats.bad_files) == 1 and "[bad]" in result.stats.bad_files[0]


def test_a_huge_csv_field_is_a_bad_file_of_its_folder_and_huge_times_are_bad_times(tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    (folder / "huge.csv").write_text("start,end,text\n0,1," + "x" * 200_000 + "\n")
    (folder / "ok.csv").write_text("start,end,text\n0,1,stir\n2,1e300,far away\n")
    result = read_captions(folder)
    assert result.captions == {"ok": [Caption(0.0, 1.0, "stir")]}
    assert result.stats.skipped == {"bad_time": 1}
    assert len(result.stats.bad_files) == 1 and "huge.csv" in result.stats.bad_files[0]
    with pytest.raises(UserError, match="cannot read captions"):
        read_captions(folder / "huge.csv")


def test_csv_directory_and_single_file(tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    (folder / "v1.csv").write_text("start,end,text\n0,2.5,Cut the onion\n3,1,backwards time\n4,x,bad\n6,8,\n")
    (folder / "v2.csv").write_text('start,end,text\n1.0,2.0,"slice, dice"\n')
    (folder / "notes.txt").write_text("ignored")
    result = read_captions(folder)
    assert result.captions == {
        "v1": [Caption(0.0, 2.5, "cut the onion")],
        "v2": [Caption(1.0, 2.0, "slice dice")],
    }
    assert result.stats.skipped == {"bad_time": 2, "empty": 1}
    assert load_captions(folder / "v1.csv") == {"v1": [Caption(0.0, 2.5, "cut the onion")]}
    assert load_captions(folder, video_ids=["v2"]) == {"v2": [Caption(1.0, 2.0, "slice dice")]}


def test_multi_video_csv(tmp_path: Path) -> None:
    (tmp_path / "all.csv").write_text(
        "video_id,start,end,text\na,0,1,whisk eggs\nb,2,3,fold dough\na,5,6,heat pan\n"
    )
    caps = load_captions(tmp_path / "all.csv")
    assert [c.text for c in caps["a"]] == ["whisk eggs", "heat pan"] and caps["b"][0].start == 2.0


SRT = """1
00:00:01,000 --> 00:00:04,500
<i>Add the</i> flour

2
00:01:02,250 --> 00:01:03,000 X1:0 X2:10
[Music]

3
00:01:05,000 --> 00:01:07,000
mix well
and bake
"""


def test_srt(tmp_path: Path) -> None:
    (tmp_path / "cake.srt").write_text("\ufeff" + SRT.replace("\n", "\r\n"))
    result = read_captions(tmp_path / "cake.srt")
    assert result.captions["cake"] == [
        Caption(1.0, 4.5, "add the flour"),
        Caption(65.0, 67.0, "mix well and bake"),
    ]
    assert result.stats.skipped["empty"] == 1


VTT = """WEBVTT
Kind: captions
Language: en

NOTE a comment

00:00:00.000 --> 00:00:02.000 align:start position:0%
so<00:00:00.500><c> today</c>

00:00:02.000 --> 00:00:02.010
so today

00:00:02.010 --> 00:00:04.000
so today
we<00:00:02.500><c> make</c> bread

00:01.000 --> 00:03.000
short form times
"""


def test_webvtt_rolling_captions_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "bread.vtt").write_text(VTT)
    result = read_captions(tmp_path / "bread.vtt")
    assert [c.text for c in result.captions["bread"]] == ["so today", "short form times", "we make bread"]
    assert result.captions["bread"][1] == Caption(1.0, 3.0, "short form times")
    assert result.stats.skipped["duplicate"] == 1


def test_garbled_captions_are_counted(tmp_path: Path) -> None:
    (tmp_path / "g.csv").write_bytes(
        b"start,end,text\n0,1,caf\xff\xfe broken\n1,2,\x01\x02ctl\n2,3,1234\n3,4,fine line\n"
    )
    result = read_captions(tmp_path / "g.csv")
    assert result.captions["g"] == [Caption(3.0, 4.0, "fine line")]
    assert result.stats.skipped["garbled"] == 3


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_captions(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="invalid JSON"):
        read_captions(tmp_path / "bad.json")
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="start,end,text"):
        read_captions(tmp_path / "h.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no caption files"):
        read_captions(empty)
    (empty / "x.vtt").write_text("not a vtt")
    (empty / "y.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nok then\n")
    result = read_captions(empty)
    assert list(result.captions) == ["y"] and "WEBVTT" in result.stats.bad_files[0]


def test_directory_reads_only_requested_videos(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("start,end,text\n0,1,chop\n")
    (tmp_path / "b.csv").write_text("not,a,caption,file\n")
    (tmp_path / "c.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nrinse\n")
    result = read_captions(tmp_path, video_ids=["a", "zzz"])
    assert result.captions == {"a": [Caption(0.0, 1.0, "chop")]}
    assert result.stats.unmatched == 2 and not result.stats.bad_files
    (tmp_path / "all.json").write_text(
        json.dumps(
            {"x": {"start": [0], "end": [1], "text": ["go"]}, "y": {"start": [], "end": [], "text": []}}
        )
    )
    assert read_captions(tmp_path / "all.json", video_ids=["x"]).stats.unmatched == 1


# YouTube's automatic captions as downloaded (.vtt): each cue shows the previous line and the new
# words, separated by 10 ms cues that only hold the finished line; a line of one space fills the
# empty row of a cue (written <SPACE> here, so that no line of this file ends in white space).
YOUTUBE_VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.199 --> 00:00:02.869 align:start position:0%
<SPACE>
hey<00:00:00.520><c> guys</c><00:00:00.880><c> today</c>

00:00:02.869 --> 00:00:02.879 align:start position:0%
hey guys today
<SPACE>

00:00:02.879 --> 00:00:05.510 align:start position:0%
hey guys today
we're<00:00:03.399><c> making</c><00:00:03.800><c> bread</c>

00:00:05.510 --> 00:00:05.520 align:start position:0%
we're making bread
<SPACE>

00:00:05.520 --> 00:00:08.000 align:start position:0%
we're making bread
first<00:00:06.000><c> the</c><00:00:06.500><c> flour</c>
""".replace("<SPACE>", " ")

YOUTUBE_CAPTIONS = [
    Caption(0.199, 2.869, "hey guys today"),
    Caption(2.879, 5.51, "we're making bread"),
    Caption(5.52, 8.0, "first the flour"),
]


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: text.encode(), id="utf-8"),
        pytest.param(lambda text: text.replace("\n", "\r\n").encode("utf-8-sig"), id="bom-crlf"),
        pytest.param(lambda text: text.replace("\n", "\r").encode(), id="cr"),
        pytest.param(lambda text: text.replace("\n", "\r\n").encode("utf-16"), id="utf-16-crlf"),
    ],
)
def test_youtube_rolling_captions(tmp_path: Path, encode) -> None:
    (tmp_path / "yt.vtt").write_bytes(encode(YOUTUBE_VTT))
    result = read_captions(tmp_path / "yt.vtt")
    assert result.captions["yt"] == YOUTUBE_CAPTIONS
    assert result.stats.skipped == {"duplicate": 2} and result.stats.kept == 3


def test_lines_of_spaces_do_not_end_a_cue(tmp_path: Path) -> None:
    """Only an empty line ends a cue; cues separated by a line of spaces stay two cues."""
    srt = (
        "1\n00:00:01,000 --> 00:00:03,000\n   \nadd the flour\n\t\nslowly\n  \n"
        "2\n00:00:04,000 --> 00:00:05,000\nmix\n \n \n"
        "3\n00:00:06,000 --> 00:00:07,000\n  \n\n"
        "4\n00:00:08,000 --> 00:00:09,000\nbake\n"
    )
    (tmp_path / "spaces.srt").write_text(srt)
    result = read_captions(tmp_path / "spaces.srt")
    assert result.captions["spaces"] == [
        Caption(1.0, 3.0, "add the flour slowly"),
        Caption(4.0, 5.0, "mix"),
        Caption(8.0, 9.0, "bake"),
    ]
    assert result.stats.skipped == {"empty": 1}
    vtt = "WEBVTT\n\nintro\n00:01.000 --> 00:02.000\n \nwhisk\n   \n00:03.000 --> 00:04.000\nfold\n"
    (tmp_path / "spaces.vtt").write_text(vtt)
    assert load_captions(tmp_path / "spaces.vtt")["spaces"] == [
        Caption(1.0, 2.0, "whisk"),
        Caption(3.0, 4.0, "fold"),
    ]


def test_bom_with_undecodable_bytes_marks_only_that_caption(tmp_path: Path) -> None:
    vtt = "WEBVTT\r\n\r\n00:01.000 --> 00:02.000\r\ncafé\r\n\r\n00:03.000 --> 00:04.000\r\nok\r\n"
    latin1 = vtt.encode("utf-8-sig").replace("é".encode(), "é".encode("latin-1"))
    (tmp_path / "mixed.vtt").write_bytes(latin1)
    result = read_captions(tmp_path / "mixed.vtt")
    assert result.captions["mixed"] == [Caption(3.0, 4.0, "ok")]
    assert result.stats.skipped == {"garbled": 1}
