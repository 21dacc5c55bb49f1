"""Tokenizer: id layout of the token list and text round trips."""

import pytest

from espnet_pruning.whisper.tokenizer import (
    FIRST_ADDED_ID,
    N_VOCAB,
    TokenListError,
    WhisperTokenizer,
    added_tokens_of,
    build_token_list,
    read_token_list,
    write_token_list,
)

ADDED = [
    "<|ic|>",
    "<|fsc|>",
    "in:activate_lights_none",
    "<SEP>",
    "<FILL>",
    "<entity:date>",
]


@pytest.fixture(scope="module")
def tok():
    return WhisperTokenizer(build_token_list(ADDED))


def test_id_layout_matches_whisper_and_universlu():
    tokens = build_token_list(ADDED)
    assert len(tokens) == N_VOCAB == 51865
    assert tokens[50257] == "<|endoftext|>"
    assert tokens[50258] == "<|startoftranscript|>"
    assert tokens[50259] == "<|en|>"
    assert tokens[50359] == "<|transcribe|>"
    assert tokens[50362] == "<|nospeech|>"
    assert tokens[50363] == "<|notimestamps|>"
    # Added token i gets id 50364 + i; the timestamps follow them.
    assert tokens[FIRST_ADDED_ID : FIRST_ADDED_ID + len(ADDED)] == ADDED
    assert tokens[FIRST_ADDED_ID + len(ADDED)] == "<|0.00|>"
    assert tokens[-1] == f"<|{(N_VOCAB - FIRST_ADDED_ID - len(ADDED) - 1) * 0.02:.2f}|>"
    assert added_tokens_of(tokens) == ADDED


def test_universlu_example_ids(tok):
    # The example of ESPnet's verified UniverSLU splicing, with our ids for added tokens.
    ids = tok.text2ids("in:activate_lights_none SEP turn on the lights")
    assert ids == [50366, 318, 8929, 1261, 322, 264, 5811]
    assert tok.ids2tokens(ids)[:3] == ["in:activate_lights_none", "ĠS", "EP"]
    assert tok.text2ids("<|en|> <|ic|> <|fsc|>") == [50259, 50364, 50365]


@pytest.mark.parametrize(
    "text",
    [
        "in:activate_lights_none SEP turn on the lights",
        "<entity:date> <FILL> tomorrow <SEP> wake me up tomorrow",
        "TURN ON THE LIGHTS",
        "héllo wörld it's 5 o'clock",
        "<|en|> <|ic|> <|fsc|>",
    ],
)
def test_round_trip(tok, text):
    assert tok.ids2text(tok.text2ids(text)) == text


def test_entity_tags_are_single_tokens(tok):
    tokens = tok.text2tokens("<entity:date> <FILL> tomorrow <SEP> wake me up")
    assert tokens == [
        "<entity:date>",
        "<FILL>",
        "Ġtomorrow",
        "<SEP>",
        "Ġwake",
        "Ġme",
        "Ġup",
    ]


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "tokens.txt"
    write_token_list(path, ADDED)
    assert read_token_list(path) == build_token_list(ADDED)
    assert not list(tmp_path.glob("*.tmp"))
    assert WhisperTokenizer(path).added_tokens == ADDED


@pytest.mark.parametrize(
    "added, message",
    [
        (["<|en|>"], "already a Whisper token"),
        (["a", "a"], "listed twice"),
        (["a b"], "whitespace"),
        ([f"t{i}" for i in range(1502)], "at most 1501"),
    ],
)
def test_bad_added_tokens(added, message):
    with pytest.raises(TokenListError, match=message):
        build_token_list(added)


def test_token_list_not_matching_whisper(tmp_path):
    tokens = build_token_list(ADDED)
    tokens[7] = "bogus"
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(tokens) + "\n")
    with pytest.raises(TokenListError, match=r"bad.txt: line 8 is 'bogus'"):
        WhisperTokenizer(path)
    path.write_text("\n".join(tokens[:100]) + "\n")
    with pytest.raises(TokenListError, match="has 100 tokens"):
        WhisperTokenizer(path)
