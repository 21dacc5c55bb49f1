"""Reading text files, stripping prompt tokens, WER normalisation, pairing by id."""

from pathlib import Path

import pytest

from espnet_pruning.scoring import (
    ScoringError,
    normalize_for_wer,
    pair_texts,
    read_text,
    strip_prompt_tokens,
)
from espnet_pruning.scoring.text import apply_missing_policy


def write(path: Path, data: str) -> Path:
    path.write_bytes(data.encode("utf-8"))
    return path


def test_read_text(tmp_path):
    path = write(
        tmp_path / "text",
        "u1 em:hap SEP i  am\thappy\r\nu2\nu3 command:yes",  # CRLF, no final newline
    )
    assert read_text(path) == {
        "u1": "em:hap SEP i  am\thappy",  # inner white space kept (SLURP's char distance)
        "u2": "",
        "u3": "command:yes",
    }


def test_read_text_keeps_file_order(tmp_path):
    path = write(tmp_path / "text", "b x\na y\n")
    assert list(read_text(path)) == ["b", "a"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("u1 a\n\nu2 b\n", ":2: empty line"),
        ("u1 a\n  u2 b\n", ":2: line starts with whitespace"),
        ("u1 a\nu2 b\nu1 c\n", ":3: duplicate utterance id 'u1' (first on line 1)"),
    ],
)
def test_read_text_malformed(tmp_path, content, message):
    path = write(tmp_path / "text", content)
    with pytest.raises(ScoringError) as e:
        read_text(path)
    assert str(path) + message in str(e.value)


def test_read_text_not_utf8(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"u1 ok\nu2 caf\xe9\n")
    with pytest.raises(ScoringError, match=r"text:2: not UTF-8"):
        read_text(path)


def test_read_text_missing_file(tmp_path):
    with pytest.raises(ScoringError, match="cannot read .*nope"):
        read_text(tmp_path / "nope")


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "<|en|> <|ic|> <|slurp|> alarm_set SEP wake me up",
            "alarm_set SEP wake me up",
        ),
        ("<|en|><|er|><|iemocap|>em:hap", "em:hap"),  # glued tokens
        ("<|0.00|> HELLO <|endoftext|>", "HELLO"),
        ("<|en|> <|ner|>", ""),
        # entity tags and separators are not prompt tokens
        ("<entity:date> <FILL> today <SEP> hi", "<entity:date> <FILL> today <SEP> hi"),
    ],
)
def test_strip_prompt_tokens(text, expected):
    assert strip_prompt_tokens(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Turn on the lights.", "TURN ON THE LIGHTS"),
        ("don't  stop, please!", "DON'T STOP PLEASE"),
        ("Don\u2019t", "DON'T"),  # typographic apostrophe
        ("twenty-one (21) {a/b}", "TWENTY ONE 21 A B"),
        ("$5 + 3 = 8", "$5 + 3 = 8"),  # symbols (Unicode S*) are kept
        ("10% #1 & co", "10 1 CO"),  # % # & are punctuation (Unicode Po)
        ("   ", ""),
    ],
)
def test_normalize_for_wer(text, expected):
    assert normalize_for_wer(text) == expected


def test_pair_texts_missing_and_prompts():
    refs = {"u1": "em:hap SEP yes", "u2": "em:sad", "u3": "em:neu"}
    hyps = {"u3": "<|en|> <|er|> em:neu", "u1": "<|en|>em:ang SEP yes"}
    paired = pair_texts(refs, hyps)
    assert paired.uttids == ("u1", "u2", "u3")  # reference order
    assert paired.hyps == ("em:ang SEP yes", "", "em:neu")
    assert paired.missing == ("u2",)
    assert (paired.n, paired.n_missing) == (3, 1)
    assert not any("<|" in h for h in paired.hyps)


def test_pair_texts_unknown_hypothesis_id():
    with pytest.raises(ScoringError, match="have no reference: 'x9'"):
        pair_texts({"u1": "a"}, {"u1": "a", "x9": "b"})


def test_pair_texts_no_references():
    with pytest.raises(ScoringError, match="no reference utterances"):
        pair_texts({}, {})


def test_strip_prompt_tokens_keep_spaces():
    text = "<|en|> <|ner|><|slurp|> <entity:time> <FILL> five  am <SEP> x "
    assert strip_prompt_tokens(text, keep_spaces=True) == (
        "<entity:time> <FILL> five  am <SEP> x"
    )
    assert strip_prompt_tokens(text) == "<entity:time> <FILL> five am <SEP> x"
    paired = pair_texts({"u": "a  b"}, {"u": "<|en|> c  d"}, keep_spaces=True)
    assert (paired.refs, paired.hyps) == (("a  b",), ("c  d",))


def test_apply_missing_policy():
    refs = {"u1": "a", "u2": "b", "u3": "c"}
    hyps = {"u3": "c", "u1": "x"}
    assert apply_missing_policy(refs, hyps, "skip") == ({"u1": "a", "u3": "c"}, ("u2",))
    assert apply_missing_policy(refs, hyps, "empty") == (refs, ("u2",))
    with pytest.raises(ScoringError, match="none of the 3 references has a hypothesis"):
        apply_missing_policy(refs, {}, "skip")
    with pytest.raises(ScoringError, match="policy 'drop' is not one of"):
        apply_missing_policy(refs, hyps, "drop")
