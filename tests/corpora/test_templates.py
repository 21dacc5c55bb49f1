import re
import shutil

import numpy as np
import pytest

from espnet_pruning.corpora.templates import (
    PROMPTS,
    TASKS,
    TEMPLATE_DIR,
    TemplateError,
    Templates,
)

T = Templates()

FORMATS = {
    "er_iemocap": r"^em:(neu|hap|sad|ang) SEP [a-z' ]+$",
    "ic_slurp": r"^[a-z]+_[a-z_]+ SEP [a-z' ]+$",
    "asr_librispeech": r"^[A-Z']+( [A-Z']+)*$",
    "ic_fsc": r"^in:[a-z_]+_[a-z]+_(none|kitchen|bedroom|washroom) SEP [a-z' ]+$",
    "ic_snips": r"^(SWITCHLIGHTON|SWITCHLIGHTOFF|INCREASEBRIGHTNESS|DECREASEBRIGHTNESS|"
    r"SETLIGHTBRIGHTNESS|SETLIGHTCOLOR) SEP [a-z' ]+$",
    "ner_slurp": r"^(<entity:[a-z_]+> <FILL> [a-z' ]+ <SEP> )*[a-z' ]+$",
    "scr_speechcommands": r"^command:(yes|no|up|down|left|right|on|off|stop|go|"
    r"_unknown_|_silence_)$",
}


def test_prompts_exact():
    assert PROMPTS == {
        "er_iemocap": "<|en|> <|er|> <|iemocap|>",
        "ic_slurp": "<|en|> <|ic|> <|slurp|>",
        "asr_librispeech": "<|en|> <|asr|> <|librispeech|>",
        "ic_fsc": "<|en|> <|ic|> <|fsc|>",
        "ic_snips": "<|en|> <|ic|> <|snips|>",
        "ner_slurp": "<|en|> <|ner|> <|slurp|>",
        "scr_speechcommands": "<|en|> <|scr|> <|google_scr|>",
    }
    assert set(TASKS) == set(PROMPTS)


@pytest.mark.parametrize("task", TASKS)
def test_formats(task):
    samples = T.sample(task, 60, np.random.default_rng(3))
    assert len(samples) == 60
    for s in samples:
        assert s.task == task
        assert re.match(FORMATS[task], s.text), s.text
        if s.style != "silence":
            assert s.spoken and s.spoken == s.spoken.lower()


def test_labels_inventory():
    labels = T.labels()
    assert set(labels) == set(TASKS)
    assert labels["er_iemocap"] == ["em:neu", "em:hap", "em:sad", "em:ang"]
    assert sorted(labels["ic_snips"]) == sorted(
        "SWITCHLIGHTON SWITCHLIGHTOFF INCREASEBRIGHTNESS DECREASEBRIGHTNESS "
        "SETLIGHTBRIGHTNESS SETLIGHTCOLOR".split()
    )
    words = "yes no up down left right on off stop go _unknown_ _silence_".split()
    assert labels["scr_speechcommands"] == [f"command:{w}" for w in words]
    assert 12 <= len(labels["ic_slurp"]) <= 20
    assert len({x.split("_")[0] for x in labels["ic_slurp"]}) >= 6  # several scenarios
    assert len(labels["ic_fsc"]) == 31
    assert labels["asr_librispeech"] == []
    assert all(re.match(r"^<entity:[a-z_]+>$", x) for x in labels["ner_slurp"])
    for task in TASKS:
        for s in T.sample(task, 40, np.random.default_rng(0)):
            if task == "ner_slurp":
                assert set(re.findall(r"<entity:[a-z_]+>", s.text)) <= set(labels[task])
            elif labels[task]:
                assert s.text.split()[0] in labels[task]


def test_balanced_classes_and_shared_er_sentences():
    samples = T.sample("er_iemocap", 40, np.random.default_rng(1))
    by_sentence = {}
    for s in samples:
        by_sentence.setdefault(s.spoken, set()).add(s.label)
    assert all(
        len(v) == 4 for v in by_sentence.values()
    )  # every sentence, every emotion
    scr = [
        s.label for s in T.sample("scr_speechcommands", 24, np.random.default_rng(1))
    ]
    assert all(scr.count(x) == 2 for x in T.labels()["scr_speechcommands"])
    tiny = [
        s.label for s in T.sample("scr_speechcommands", 2, np.random.default_rng(1))
    ]
    assert tiny == ["command:_silence_", "command:_unknown_"]


def test_ner_chunks_in_sentence_order():
    n_with = 0
    for s in T.sample("ner_slurp", 80, np.random.default_rng(5)):
        *chunks, transcript = s.text.split(" <SEP> ")
        pos = 0
        for chunk in chunks:
            m = re.match(r"^<entity:([a-z_]+)> <FILL> (.+)$", chunk)
            assert m, chunk
            idx = transcript.find(m.group(2), pos)
            assert idx >= pos, (s.text, chunk)
            pos = idx + len(m.group(2))
        n_with += bool(chunks)
    assert 0 < n_with < 80  # some utterances have entities, some have none


def test_asr_unique_with_exclude():
    seen = set()
    a = T.sample("asr_librispeech", 50, np.random.default_rng(0), exclude=seen)
    b = T.sample("asr_librispeech", 50, np.random.default_rng(0), exclude=seen)
    texts = [s.text for s in a + b]
    assert len(set(texts)) == 100 and len(seen) == 100


def test_lexicon_only_in_spoken_form():
    s = [
        x
        for x in T.sample("ic_slurp", 400, np.random.default_rng(0))
        if " am" in x.text
    ]
    assert s and all("a.m." in x.spoken and "a.m." not in x.text for x in s)


def test_deterministic():
    for task in TASKS:
        a = T.sample(task, 20, np.random.default_rng(7))
        b = T.sample(task, 20, np.random.default_rng(7))
        assert a == b


def test_malformed_template(tmp_path):
    d = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, d)
    src = (d / "snips.yaml").read_text()
    (d / "snips.yaml").write_text(
        src.replace("make the lights {color}", "make it {colour}")
    )
    with pytest.raises(TemplateError, match=r"snips.yaml.*unknown slot \{colour\}"):
        Templates(d)
    (d / "snips.yaml").write_text(src.replace("make the lights {color}", "Make It Red"))
    with pytest.raises(TemplateError, match="snips.yaml.*lower-case"):
        Templates(d)
