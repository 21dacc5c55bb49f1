"""SLURP's SLU-F1 (span-distance F1, word and char passes summed) and exact-span F1."""

import pytest

from espnet_pruning.scoring import METRICS, ScoringError
from espnet_pruning.scoring.entities import Entity, parse_entities
from espnet_pruning.scoring.slu_f1 import char_distance, word_distance

GOLD = (
    "<entity:date> <FILL> tomorrow <SEP> <entity:time> <FILL> five am <SEP> "
    "<entity:time> <FILL> six pm <SEP> <entity:place_name> <FILL> kitchen <SEP> "
    "wake me up tomorrow at five am"
)
PRED = (
    "<|en|> <|ner|> <|slurp|> <entity:time> <FILL> six am <SEP> "
    "<entity:person> <FILL> john <SEP> <entity:date> <FILL> tomorrow <SEP> "
    "<entity:oops> tomorrow <SEP> wake me up tomorrow at six am"
)


def test_parse_entities():
    parsed = parse_entities(GOLD)
    assert parsed.entities == (
        Entity("date", "tomorrow"),
        Entity("time", "five am"),
        Entity("time", "six pm"),
        Entity("place_name", "kitchen"),
    )
    assert parsed.transcript == "wake me up tomorrow at five am"
    assert parsed.malformed == ()


@pytest.mark.parametrize(
    "chunk",
    [
        "<entity:date> tomorrow",  # no <FILL>
        "date <FILL> tomorrow",  # no tag
        "<entity:date> <FILL> a <FILL> b",  # two <FILL>
        "<entity:date> <FILL> a <entity:time> b",  # tag inside the filler
    ],
)
def test_parse_entities_drops_malformed_chunks(chunk):
    parsed = parse_entities(f"{chunk} <SEP> <entity:time> <FILL> noon <SEP> hi")
    assert parsed.entities == (Entity("time", "noon"),)
    assert parsed.malformed == (chunk,)


def test_parse_entities_keeps_fillers_as_written():
    parsed = parse_entities(
        "<entity:date> <FILL> <SEP> <entity:time>  <FILL>  five  am\t<SEP> hi  there"
    )
    # the empty filler is an entity; white space inside a filler is kept, at its ends not
    assert parsed.entities == (Entity("date", ""), Entity("time", "five  am"))
    assert parsed.transcript == "hi there" and parsed.malformed == ()


def test_parse_entities_without_sep_has_no_entities():
    parsed = parse_entities("<entity:date> <FILL> tomorrow")
    assert (
        parsed.entities == () and parsed.transcript == "<entity:date> <FILL> tomorrow"
    )


def test_distances():
    # word: lev([five, am], [six, am]) = 1 substitution, / 2 gold words = 0.5
    assert word_distance("five am", "six am") == pytest.approx(0.5)
    # WER may exceed 1: gold "five", pred "five thirty am" -> 2 insertions / 1 = 2
    assert word_distance("five", "five thirty am") == pytest.approx(2.0)
    # char: lev("five am", "six am") = 3 (f->s, v->x, delete e), / max(7, 6) = 3/7
    assert char_distance("five am", "six am") == pytest.approx(3 / 7)
    # char: lev("six pm", "six am") = 1 (p->a), / 6 = 1/6
    assert char_distance("six pm", "six am") == pytest.approx(1 / 6)


def test_slu_f1_hand_computed():
    result = METRICS["slu_f1"]({"u1": GOLD}, {"u1": PRED})
    # Gold: date/tomorrow, time/five am, time/six pm, place_name/kitchen.
    # Pred: time/six am, person/john, date/tomorrow (+ a malformed chunk, dropped).
    # Word pass:
    #   time/six am: WER vs five am = 1/2, vs six pm = 1/2; tie -> first (five am):
    #     TP 1, FP 0.5, FN 0.5
    #   person/john: no gold person -> FP 1
    #   date/tomorrow: d = 0 -> TP 1
    #   leftover six pm, kitchen -> FN 2
    #   TP_w = 2, FP_w = 1.5, FN_w = 2.5
    # Char pass:
    #   time/six am: vs five am 3/7, vs six pm 1/6 -> six pm: TP 1, FP 1/6, FN 1/6
    #   person/john: FP 1; date/tomorrow: TP 1
    #   leftover five am, kitchen -> FN 2
    #   TP_c = 2, FP_c = 7/6, FN_c = 13/6
    # Sum: TP = 4, FP = 1.5 + 7/6 = 8/3, FN = 2.5 + 13/6 = 14/3
    # P = 4 / (20/3) = 3/5, R = 4 / (26/3) = 6/13
    # F1 = 2 (3/5)(6/13) / (3/5 + 6/13) = (36/65) / (69/65) = 12/23 = 52.17 %
    assert result.value == pytest.approx(100 * 12 / 23)
    slu = result.details["slu"]
    assert (slu["tp"], slu["fp"], slu["fn"]) == pytest.approx((4, 8 / 3, 14 / 3))
    assert slu["precision"] == pytest.approx(60.0)
    assert slu["recall"] == pytest.approx(100 * 6 / 13)
    word = result.details["word"]
    assert (word["tp"], word["fp"], word["fn"]) == pytest.approx((2, 1.5, 2.5))
    char = result.details["char"]
    assert (char["tp"], char["fp"], char["fn"]) == pytest.approx((2, 7 / 6, 13 / 6))
    # Exact span: only date/tomorrow matches: TP 1, FP 2, FN 3
    # P = 1/3, R = 1/4, F1 = 2 (1/12) / (7/12) = 2/7 = 28.57 %
    assert result.details["span_f1"] == pytest.approx(100 * 2 / 7)
    assert result.details["n_gold_entities"] == 4
    assert result.details["n_pred_entities"] == 3
    assert result.details["n_malformed_hyp_chunks"] == 1


def test_slu_f1_missing_hypothesis_and_utterances_without_entities():
    refs = {
        "u1": "<entity:date> <FILL> today <SEP> what is on today",
        "u2": "<entity:time> <FILL> noon <SEP> lunch at noon",
        "u3": "hello there",  # no entities
    }
    hyps = {
        "u1": "<entity:date> <FILL> today <SEP> what is on today",
        "u3": "<entity:date> <FILL> there <SEP> hello there",
    }
    result = METRICS["slu_f1"](refs, hyps)
    # each pass: u1 TP 1; u2 missing -> FN 1; u3 spurious date -> FP 1
    # sum of both passes: TP 2, FP 2, FN 2 -> P = R = F1 = 1/2
    assert result.value == pytest.approx(50.0)
    assert result.details["n_missing"] == 1


def test_empty_predicted_filler_is_an_entity_at_distance_one():
    # SLURP's scorer: jiwer WER("tomorrow", "") = 1, normalised Levenshtein = 8/8 = 1,
    # so each pass has TP 1, FP 1, FN 1 -> P = R = F1 = 1/2.
    ref = {"u1": "<entity:date> <FILL> tomorrow <SEP> wake me up tomorrow"}
    result = METRICS["slu_f1"](ref, {"u1": "<entity:date> <FILL> <SEP> wake me up"})
    assert result.value == pytest.approx(50.0)
    assert result.details["word"]["f1"] == result.details["char"]["f1"] == 50.0
    assert (result.details["n_pred_entities"], result.details["span_f1"]) == (1, 0.0)


def test_repeated_spaces_in_a_filler_count_in_the_char_distance():
    ref = {"u1": "<entity:time> <FILL> five am <SEP> at five am"}
    result = METRICS["slu_f1"](ref, {"u1": "<entity:time> <FILL> five  am <SEP> x"})
    # word: jiwer ignores the doubled space, d = 0: TP 1.
    # char: lev("five am", "five  am") = 1 insertion / max(7, 8) = 1/8: TP 1, FP = FN
    # = 1/8. Sum: TP 2, FP = FN = 1/8 -> P = R = F1 = 2 / 2.125 = 94.1176 %.
    assert result.value == pytest.approx(100 * 2 / 2.125)
    assert result.details["word"]["f1"] == 100.0
    assert result.details["char"]["fp"] == pytest.approx(1 / 8)
    assert result.details["span_f1"] == 0.0  # "five  am" is not the exact filler


def test_empty_gold_filler_is_an_error():
    with pytest.raises(ScoringError, match="'u1' has an entity without filler words"):
        METRICS["slu_f1"]({"u1": "<entity:date> <FILL> <SEP> hi"}, {})


def test_slu_f1_perfect_and_empty():
    refs = {"u1": "<entity:date> <FILL> today <SEP> today", "u2": "hi"}
    assert METRICS["slu_f1"](refs, dict(refs)).value == pytest.approx(100.0)
    # no gold and no predicted entities at all: P, R, F1 undefined -> 0
    assert METRICS["slu_f1"]({"u": "hi"}, {"u": "hi"}).value == 0.0


def test_slu_f1_malformed_reference_is_an_error():
    with pytest.raises(ScoringError, match="reference of utterance 'u1'.*malformed"):
        METRICS["slu_f1"]({"u1": "<entity:date> today <SEP> hi"}, {})
