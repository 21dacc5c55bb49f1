"""The prompt is spliced into the target; bad data is named."""

import numpy as np
import pytest

from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.uslu.preprocessor import DataError, USLUPreprocessor
from espnet_pruning.whisper.tokenizer import build_token_list

REG = TaskRegistry.load().subset(["ic_fsc", "er_iemocap"])
TOKENS = build_token_list(REG.added_tokens([("ic_fsc", "in:activate_lights_none")]))


@pytest.fixture(scope="module")
def pre():
    return USLUPreprocessor(train=True, token_list=TOKENS, tasks=REG)


def test_prompt_is_spliced_into_target(pre):
    out = pre(
        "u1",
        {
            "speech": np.zeros((1, 160), np.float64),
            "text": "in:activate_lights_none SEP turn on the lights",
            "prompt": "<|en|> <|ic|> <|fsc|>",
        },
    )
    ids = TOKENS.index
    # <|en|> <|ic|> <|fsc|> <|notimestamps|> label ĠS EP Ġturn Ġon Ġthe Ġlights
    assert out["text"].tolist() == [
        50259,
        ids("<|ic|>"),
        ids("<|fsc|>"),
        50363,
        ids("in:activate_lights_none"),
        318,
        8929,
        1261,
        322,
        264,
        5811,
    ]
    assert out["prompt"].tolist() == [50259, ids("<|ic|>"), ids("<|fsc|>")]
    assert out["speech"].shape == (160,) and out["speech"].dtype == np.float32


def test_unknown_prompt_names_the_utterance(pre):
    with pytest.raises(
        DataError, match="utterance u7: prompt '<|en|> <|ic|> <|atis|>'"
    ):
        pre("u7", {"text": "x", "prompt": "<|en|> <|ic|> <|atis|>"})


def test_label_outside_token_list_names_the_utterance(pre):
    with pytest.raises(
        DataError, match=r"utterance u8 \(task ic_fsc\): label/tag 'in:new_x_y'"
    ):
        pre("u8", {"text": "in:new_x_y SEP go", "prompt": "<|en|> <|ic|> <|fsc|>"})


def test_token_list_without_the_tasks_prompt_tokens():
    other = build_token_list(["<|scr|>"])
    with pytest.raises(DataError, match="task ic_fsc: prompt token"):
        USLUPreprocessor(train=True, token_list=other, tasks=REG)
