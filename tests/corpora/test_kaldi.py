import numpy as np
import pytest
import soundfile as sf

from espnet_pruning.corpora.audio import write_wav
from espnet_pruning.corpora.kaldi import (
    DataDirError,
    KaldiEntry,
    main,
    validate_data_dir,
    write_data_dir,
)


@pytest.fixture()
def entries(tmp_path):
    out = []
    for spk, n in (("spk02", 2), ("spk01", 3)):
        for i in range(n):
            utt = f"{spk}-ic_fsc-{i:05d}"
            wav = tmp_path / "wavs" / f"{utt}.wav"
            write_wav(wav, np.full(1000 + i, 100, np.int16))
            out.append(
                KaldiEntry(
                    utt_id=utt,
                    speaker=spk,
                    wav=str(wav),
                    text="in:activate_lights_none SEP turn on the lights",
                    prompt="<|en|> <|ic|> <|fsc|>",
                    category="ic_fsc",
                    num_samples=1000 + i,
                )
            )
    return out


def test_write_and_validate(tmp_path, entries):
    d = tmp_path / "data" / "train"
    write_data_dir(d, entries)
    assert validate_data_dir(d) == 5
    lines = (d / "utt2spk").read_text().splitlines()
    assert lines == sorted(lines) and lines[0] == "spk01-ic_fsc-00000 spk01"
    assert (d / "spk2utt").read_text().splitlines()[1] == (
        "spk02 spk02-ic_fsc-00000 spk02-ic_fsc-00001"
    )
    assert (d / "prompt").read_text().splitlines()[0].endswith(" <|en|> <|ic|> <|fsc|>")
    # Rewriting replaces the directory atomically and leaves no temporaries.
    write_data_dir(d, entries[:2])
    assert validate_data_dir(d) == 2
    assert sorted(p.name for p in d.parent.iterdir()) == ["train"]
    main([str(d)])


def test_write_rejects_bad_ids(tmp_path, entries):
    bad = entries[0].__class__(**dict(entries[0].__dict__, speaker="spk09"))
    with pytest.raises(ValueError, match="must start with 'spk09-'"):
        write_data_dir(tmp_path / "x", [bad])
    assert not (tmp_path / "x").exists()


def _edit(path, fn):
    lines = path.read_text().splitlines()
    path.write_text("".join(x + "\n" for x in fn(lines)))


@pytest.mark.parametrize(
    "name,fn,match",
    [
        ("text", lambda L: [L[1], L[0]] + L[2:], r"text:2: not sorted"),
        ("text", lambda L: L[:1] + L[:1] + L[2:], r"text:2: duplicate key"),
        ("text", lambda L: L[:-1], r"text: utterance ids differ"),
        ("utt2spk", lambda L: L[:-1] + [L[-1].replace(" spk02", " spk01")], r"spk2utt"),
        (
            "spk2utt",
            lambda L: [L[0].rsplit(" ", 1)[0]] + L[1:],
            r"spk2utt:1: utterances",
        ),
        ("text", lambda L: L[:1] + [L[1] + "\x07"] + L[2:], r"text:2: non-printable"),
        (
            "wav.scp",
            lambda L: L[:1] + [L[1] + "x"] + L[2:],
            r"wav\.scp:2: .*cannot read",
        ),
        (
            "utt2num_samples",
            lambda L: [L[0] + "1"] + L[1:],
            r"utt2num_samples: .* says",
        ),
        (
            "text",
            lambda L: [L[0].replace(" ", "  ", 1)] + L[1:],
            r"text:1: .*single spaces",
        ),
    ],
)
def test_validate_errors(tmp_path, entries, name, fn, match):
    d = tmp_path / "train"
    write_data_dir(d, entries)
    _edit(d / name, fn)
    with pytest.raises(DataDirError, match=match):
        validate_data_dir(d)


def test_validate_wrong_rate_and_missing_file(tmp_path, entries):
    d = tmp_path / "train"
    write_data_dir(d, entries)
    sf.write(entries[0].wav, np.zeros(1000, np.int16), 22050, subtype="PCM_16")
    with pytest.raises(DataDirError, match=r"wav\.scp:4: .*22050 Hz"):
        validate_data_dir(d)
    assert validate_data_dir(d, check_audio=False) == 5
    (d / "spk2utt").unlink()
    with pytest.raises(DataDirError, match=r"spk2utt: missing"):
        validate_data_dir(d)
    with pytest.raises(SystemExit):
        main([str(d)])
