"""Task specifiers: the seven built-in tasks, YAML extension, validation."""

import pytest

from espnet_pruning.specifiers import SpecifierError, TaskRegistry

SEVEN = {
    "er_iemocap": ("<|en|> <|er|> <|iemocap|>", "accuracy"),
    "ic_slurp": ("<|en|> <|ic|> <|slurp|>", "accuracy"),
    "asr_librispeech": ("<|en|> <|asr|> <|librispeech|>", "wer"),
    "ic_fsc": ("<|en|> <|ic|> <|fsc|>", "accuracy"),
    "ic_snips": ("<|en|> <|ic|> <|snips|>", "macro_f1"),
    "ner_slurp": ("<|en|> <|ner|> <|slurp|>", "slu_f1"),
    "scr_speechcommands": ("<|en|> <|scr|> <|google_scr|>", "accuracy"),
}


def test_builtin_seven_tasks():
    reg = TaskRegistry.load()
    assert reg.names == list(SEVEN)
    for name, (prompt, metric) in SEVEN.items():
        assert " ".join(reg[name].prompt) == prompt
        assert reg[name].metric == metric
        assert reg.task_of_prompt(prompt) == name
    # SLURP's scenario and action accuracy are scored beside IC-SLURP's accuracy
    assert [t.name for t in reg if t.figures] == ["ic_slurp"]
    assert reg["ic_slurp"].figures == ("slurp_intent",)
    assert TaskRegistry.from_dict(reg.to_dict())["ic_slurp"].figures == (
        "slurp_intent",
    )


def test_user_yaml_adds_a_task_without_code(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "tasks:\n"
        "  sd_mustard:\n"
        "    prompt: '<|en|> <|sd|> <|mustard|>'\n"
        "    target: classification\n"
        "    metric: accuracy\n"
        "    labels: [class:sarcastic, class:not_sarcastic]\n"
    )
    reg = TaskRegistry.load(path)
    assert reg.names[-1] == "sd_mustard" and len(reg) == 8
    assert reg.task_of_prompt("<|en|> <|sd|> <|mustard|>") == "sd_mustard"
    assert TaskRegistry.from_dict(reg.to_dict()).names == reg.names
    only = TaskRegistry.load(path, extend_builtin=False)
    assert only.names == ["sd_mustard"]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "tasks:\n  x:\n    prompt: '<|en|>'\n    target: classification\n",
            "missing key 'metric'",
        ),
        (
            "tasks:\n  x:\n    prompt: '<|en|>'\n    target: nope\n    metric: wer\n",
            "tasks.x.target",
        ),
        (
            "tasks:\n  x:\n    prompt: 'en'\n    target: transcript\n    metric: wer\n",
            "tasks.x.prompt",
        ),
        (
            "tasks:\n  x:\n    prompt: '<|a|>'\n    target: transcript\n    metric: wer\n    colour: red\n",
            r"unknown key\(s\) \['colour'\]",
        ),
        (
            "tasks:\n  x:\n    prompt: '<|a|>'\n    target: transcript\n    metric: wer\n    figures: [bleu]\n",
            r"tasks.x.figures: expected a list of names of \('slurp_intent',\)",
        ),
        ("tasks: [1, 2]\n", "non-empty mapping"),
        ("tasks:\n  x: [\n", "not valid YAML"),
        (
            "tasks:\n  er_copy:\n    prompt: '<|en|> <|er|> <|iemocap|>'\n    target: classification\n    metric: accuracy\n",
            "share the prompt",
        ),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(SpecifierError, match=message) as err:
        TaskRegistry.load(path)
    assert "bad.yaml" in str(err.value) or "share the prompt" in str(err.value)


def test_unknown_task_and_prompt():
    reg = TaskRegistry.load()
    with pytest.raises(SpecifierError, match="unknown task 'ic_atis'"):
        reg["ic_atis"]
    with pytest.raises(SpecifierError, match="belongs to no known task"):
        reg.task_of_prompt("<|en|> <|ic|> <|atis|>")


def test_added_tokens_order_is_deterministic():
    reg = TaskRegistry.load().subset(["ic_fsc", "ner_slurp", "er_iemocap"])
    texts = [
        ("ic_fsc", "in:b_x_none SEP go"),
        ("ner_slurp", "<entity:time> <FILL> five am <SEP> wake me at five am"),
        ("ic_fsc", "in:a_x_none SEP go"),
    ]
    assert reg.added_tokens(texts) == [
        "<|ic|>",
        "<|fsc|>",
        "<|ner|>",
        "<|slurp|>",
        "<|er|>",
        "<|iemocap|>",
        "<SEP>",
        "<FILL>",
        "em:neu",
        "em:hap",
        "em:sad",
        "em:ang",
        "<entity:time>",
        "in:a_x_none",
        "in:b_x_none",
    ]


def test_tasks_of_prompts_decides_and_checks_against_utt2category(tmp_path):
    from espnet_pruning.errors import DataError

    reg = TaskRegistry.load()
    prompt, category = tmp_path / "prompt", tmp_path / "utt2category"
    prompt.write_text(
        "u1 <|en|> <|ic|> <|fsc|>\nu2 <|en|> <|er|> <|iemocap|>\n", encoding="utf-8"
    )
    category.write_text("u1 ic_fsc\nu2 er_iemocap\n", encoding="utf-8")
    assert reg.tasks_of_prompts(prompt, category) == {
        "u1": "ic_fsc",
        "u2": "er_iemocap",
    }
    category.write_text("u1 ic_fsc\nu2 ic_fsc\n", encoding="utf-8")
    with pytest.raises(
        DataError, match="utterance u2 is 'ic_fsc' but its prompt is task 'er_iemocap'"
    ):
        reg.tasks_of_prompts(prompt, category)
    category.write_text("u1 ic_fsc\n", encoding="utf-8")
    with pytest.raises(DataError, match="u2 is None"):
        reg.tasks_of_prompts(prompt, category)
    prompt.write_text("u1 <|en|> <|ic|> <|fsc|>\nu2 <|en|> <|xx|>\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"prompt:2: utterance u2: prompt '<\|en\|> "):
        reg.tasks_of_prompts(prompt)
