import pytest
from corpora_testlib import corrupt, write_audio

from espnet_pruning.corpora.audio import WavError, check_audio_file
from espnet_pruning.corpora.kaldi import (
    KaldiEntry,
    read_data_dir,
    validate_data_dir,
    write_data_dir,
)
from espnet_pruning.corpora.prep import (
    Utterance,
    normalize_transcript,
    sanitize,
    with_transcript,
)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Wake me up at 5 a.m., please!", "wake me up at 5 am please"),
        ("email @john #news", "email at john hashtag news"),
        ("Tom & Jerry's café -- now", "tom and jerry's cafe now"),
        ("  [LAUGHTER]  ", "laughter"),
        ("...", ""),
        ("I\u2019m here", "i'm here"),
    ],
)
def test_normalize_transcript(raw, expected):
    assert normalize_transcript(raw) == expected


def test_ids_and_targets(tmp_path):
    assert sanitize("FO-488") == "FO_488" and sanitize("a b--c") == "a_b_c"
    with pytest.raises(ValueError):
        sanitize("--")
    u = Utterance(
        "slurp", "FO-488", "audio-1", "ic_slurp", tmp_path / "a.flac", "x", "f:1"
    )
    assert (u.spk_id, u.utt_id) == ("slurp_FO_488", "slurp_FO_488-ic_slurp-audio-1")
    assert with_transcript("em:neu", "") == "em:neu"
    assert normalize_transcript("it's me", upper=True) == "IT'S ME"


def test_flac_checked_from_header(tmp_path):
    flac = write_audio(tmp_path / "a.flac", n=1234, fmt="FLAC")
    assert check_audio_file(flac) == 1234
    assert check_audio_file(write_audio(tmp_path / "b.wav", n=99)) == 99
    with pytest.raises(WavError, match="8000 Hz"):
        check_audio_file(write_audio(tmp_path / "c.flac", rate=8000, fmt="FLAC"))
    with pytest.raises(WavError, match="unreadable"):
        check_audio_file(corrupt(tmp_path / "c.flac"))
    with pytest.raises(WavError, match="cannot read"):
        check_audio_file(tmp_path / "missing.flac")


def test_flac_data_dir_round_trip(tmp_path):
    entries = [
        KaldiEntry(
            utt_id=f"libri_1-asr_librispeech-1-2-000{i}",
            speaker="libri_1",
            wav=str(write_audio(tmp_path / f"{i}.flac", n=500 + i, fmt="FLAC")),
            text="HELLO",
            prompt="<|en|> <|asr|> <|librispeech|>",
            category="asr_librispeech",
        )
        for i in range(2)
    ]
    d = tmp_path / "data/set"
    write_data_dir(d, entries)
    assert not (d / "utt2num_samples").exists()
    assert validate_data_dir(d) == 2
    assert read_data_dir(d) == entries
