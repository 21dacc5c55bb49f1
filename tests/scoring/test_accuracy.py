"""First-token accuracy."""

import pytest

from espnet_pruning.scoring import METRICS, ScoringError


def test_accuracy_hand_computed():
    refs = {
        "er1": "em:hap SEP i am so happy",
        "ic1": "alarm_set SEP wake me up",
        "fsc1": "in:activate_lights_none SEP turn on the lights",
        "snips1": "SWITCHLIGHTON SEP lights on",
        "scr1": "command:yes",
        "scr2": "command:no",
    }
    hyps = {
        "er1": "<|en|> <|er|> <|iemocap|> em:hap SEP i am happy",  # right label
        "ic1": "<|en|> <|ic|> <|slurp|> alarm_query SEP wake me up",  # wrong
        "fsc1": "in:activate_lights_none",  # right (transcript not needed)
        "snips1": "<|en|> <|ic|> <|snips|>",  # only prompt tokens: empty, wrong
        "scr1": "command:yes",  # right
        # scr2 missing: empty, wrong
    }
    result = METRICS["accuracy"](refs, hyps)
    # 3 correct (er1, fsc1, scr1) of 6: 100 * 3 / 6 = 50.0
    assert result.value == pytest.approx(50.0)
    assert result.n == 6
    assert result.higher_is_better
    assert result.details == {"n_correct": 3, "n_missing": 1, "n_empty_hyp": 2}


def test_accuracy_prompt_token_is_not_a_label():
    # Had "<|en|>" survived, the first token would be "<|en|>" and the answer wrong.
    result = METRICS["accuracy"]({"u": "command:go"}, {"u": "<|en|><|scr|>command:go"})
    assert result.value == 100.0


def test_accuracy_empty_reference_is_an_error():
    with pytest.raises(ScoringError, match="reference of utterance 'u2' is empty"):
        METRICS["accuracy"]({"u1": "command:yes", "u2": ""}, {})


def test_accuracy_to_dict():
    d = METRICS["accuracy"]({"u": "a"}, {"u": "b"}).to_dict()
    assert d == {
        "name": "accuracy",
        "value": 0.0,
        "n": 1,
        "higher_is_better": True,
        "details": {"n_correct": 0, "n_missing": 0, "n_empty_hyp": 0},
    }
