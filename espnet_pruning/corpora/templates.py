"""Text and label generation of the embedded synthetic corpus, from YAML templates.

The templates in ``templates/*.yaml`` beside this module were written for this project
(nothing is copied from the licensed corpora); they imitate the *kind* of sentences and the
label formats of IEMOCAP, SLURP, LibriSpeech, Fluent Speech Commands, SNIPS SmartLights and
Speech Commands. :class:`Templates` turns them into :class:`Sample` s: the Kaldi ``text``
target of a task, the words the TTS engine speaks and the label.

Target formats (exact; the recipe and the task specifiers rely on them):

=====================  ==============================================================
task                   ``text``
=====================  ==============================================================
er_iemocap             ``em:<neu|hap|sad|ang> SEP <lower-case transcript>``
ic_slurp               ``<scenario>_<action> SEP <lower-case transcript>``
asr_librispeech        ``UPPER CASE TRANSCRIPT`` (apostrophes kept)
ic_fsc                 ``in:<action>_<object>_<location> SEP <lower-case transcript>``
ic_snips               ``<INTENT> SEP <lower-case transcript>``
ner_slurp              ``<entity:T> <FILL> filler <SEP> ... <SEP> transcript``
scr_speechcommands     ``command:<word|_unknown_|_silence_>``
=====================  ==============================================================
"""

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import yaml
from typeguard import typechecked

TEMPLATE_DIR = Path(__file__).with_name("templates")

#: The seven tasks, in the order sets list them.
TASKS: Tuple[str, ...] = (
    "er_iemocap",
    "ic_slurp",
    "asr_librispeech",
    "ic_fsc",
    "ic_snips",
    "ner_slurp",
    "scr_speechcommands",
)

#: Prompt of every task (``<|language|> <|task|> <|dataset|>``).
PROMPTS: Dict[str, str] = {
    "er_iemocap": "<|en|> <|er|> <|iemocap|>",
    "ic_slurp": "<|en|> <|ic|> <|slurp|>",
    "asr_librispeech": "<|en|> <|asr|> <|librispeech|>",
    "ic_fsc": "<|en|> <|ic|> <|fsc|>",
    "ic_snips": "<|en|> <|ic|> <|snips|>",
    "ner_slurp": "<|en|> <|ner|> <|slurp|>",
    "scr_speechcommands": "<|en|> <|scr|> <|google_scr|>",
}

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
_SLOT = re.compile(r"\{([A-Za-z_]+)\}")
_WORDS = re.compile(r"^[a-z']+( [a-z']+)*$")


class TemplateError(ValueError):
    """A template file is malformed (names the file and the entry)."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One utterance's content.

    Attributes:
        task: Task name (one of :data:`TASKS`).
        text: Kaldi ``text`` target.
        spoken: What the TTS engine says (lower case; empty for ``_silence_``).
        label: Classification label (``em:hap``, ``alarm_set``, ...), ``None`` for ASR/NER.
        style: Rendering style: the emotion for ``er_iemocap`` (``neu``...), ``silence`` for
            a ``_silence_`` clip, else ``None``.
    """

    task: str
    text: str
    spoken: str
    label: Optional[str] = None
    style: Optional[str] = None


def _load_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise TemplateError(f"{path}: cannot read template file: {e}") from e
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping at top level")
    return data


def _words(path: Path, where: str, value) -> str:
    """Check a phrase: lower-case words and apostrophes, single spaces (slots allowed)."""
    if not isinstance(value, str):
        raise TemplateError(f"{path}: {where}: expected a string, got {value!r}")
    if not _WORDS.match(_SLOT.sub("x", value)):
        raise TemplateError(
            f"{path}: {where}: {value!r} must be lower-case words (a-z, ') "
            "separated by single spaces, with optional {slot}s"
        )
    return value


def _string_list(path: Path, where: str, value) -> List[str]:
    if not isinstance(value, list) or not value:
        raise TemplateError(f"{path}: {where}: expected a non-empty list")
    return [_words(path, f"{where}[{i}]", v) for i, v in enumerate(value)]


class Templates:
    """All templates of the synthetic corpus, loaded and checked.

    Args:
        directory: Folder holding ``emotions.yaml``, ``slurp.yaml``, ``asr.yaml``,
            ``fsc.yaml``, ``snips.yaml``, ``scr.yaml`` and ``lexicon.yaml``.
    """

    FILES = (
        "emotions.yaml",
        "slurp.yaml",
        "asr.yaml",
        "fsc.yaml",
        "snips.yaml",
        "scr.yaml",
        "lexicon.yaml",
        "speakers.yaml",
    )

    @typechecked
    def __init__(self, directory: Path = TEMPLATE_DIR):
        self.directory = Path(directory)
        d = self.directory
        # Emotion recognition.
        emo = _load_yaml(d / "emotions.yaml")
        if not isinstance(emo.get("emotions"), dict) or not emo["emotions"]:
            raise TemplateError(f"{d / 'emotions.yaml'}: 'emotions' must be a mapping")
        self.emotions: Tuple[str, ...] = tuple(emo["emotions"])
        self.er_sentences = _string_list(
            d / "emotions.yaml", "sentences", emo.get("sentences")
        )
        # SLURP (IC and NER share intents and entities).
        slurp = _load_yaml(d / "slurp.yaml")
        p = d / "slurp.yaml"
        if not isinstance(slurp.get("intents"), dict) or not isinstance(
            slurp.get("entities"), dict
        ):
            raise TemplateError(f"{p}: needs mappings 'intents' and 'entities'")
        self.slurp_entities = {
            k: _string_list(p, f"entities.{k}", v) for k, v in slurp["entities"].items()
        }
        self.slurp_intents = {
            k: _string_list(p, f"intents.{k}", v) for k, v in slurp["intents"].items()
        }
        for intent, phrases in self.slurp_intents.items():
            if not re.match(r"^[a-z]+_[a-z_]+$", intent):
                raise TemplateError(
                    f"{p}: intent {intent!r} is not <scenario>_<action>"
                )
            self._check_slots(p, f"intents.{intent}", phrases, self.slurp_entities)
        # ASR grammar.
        asr = _load_yaml(d / "asr.yaml")
        p = d / "asr.yaml"
        rules = asr.get("rules")
        if not isinstance(rules, dict) or asr.get("start") not in rules:
            raise TemplateError(f"{p}: needs 'rules' containing the 'start' symbol")
        self.asr_rules = {k: _string_list(p, f"rules.{k}", v) for k, v in rules.items()}
        for k, alts in self.asr_rules.items():
            self._check_slots(p, f"rules.{k}", alts, self.asr_rules)
        self.asr_start: str = asr["start"]
        self.asr_max_depth = int(asr.get("max_depth", 3))
        # Fluent Speech Commands.
        self.fsc_intents = self._expand_fsc(d / "fsc.yaml")
        # SNIPS SmartLights.
        snips = _load_yaml(d / "snips.yaml")
        p = d / "snips.yaml"
        self.snips_slots = {
            k: _string_list(p, f"slots.{k}", v)
            for k, v in (snips.get("slots") or {}).items()
        }
        self.snips_intents = {
            k: _string_list(p, f"intents.{k}", v)
            for k, v in (snips.get("intents") or {}).items()
        }
        for intent, phrases in self.snips_intents.items():
            if not re.match(r"^[A-Z]+$", intent):
                raise TemplateError(
                    f"{p}: intent {intent!r} must be upper-case letters"
                )
            self._check_slots(p, f"intents.{intent}", phrases, self.snips_slots)
        # Speech commands.
        scr = _load_yaml(d / "scr.yaml")
        p = d / "scr.yaml"
        self.scr_commands = _string_list(p, "commands", scr.get("commands"))
        self.scr_unknown = _string_list(p, "unknown_words", scr.get("unknown_words"))
        overlap = set(self.scr_commands) & set(self.scr_unknown)
        if overlap:
            raise TemplateError(
                f"{p}: words both command and unknown: {sorted(overlap)}"
            )
        self.scr_silence_seconds = float(scr.get("silence_seconds", 1.0))
        self.scr_min_seconds = float(scr.get("min_seconds", 1.0))
        # Pronunciation lexicon (TTS input only).
        lex = _load_yaml(d / "lexicon.yaml")
        self.lexicon = {str(k): str(v) for k, v in lex.items()}

    @staticmethod
    def _check_slots(path: Path, where: str, phrases: Sequence[str], known) -> None:
        for phrase in phrases:
            for slot in _SLOT.findall(phrase):
                if slot not in known:
                    raise TemplateError(f"{path}: {where}: unknown slot {{{slot}}}")

    def _expand_fsc(self, path: Path) -> Dict[str, List[str]]:
        data = _load_yaml(path)
        groups = data.get("groups")
        if not isinstance(groups, list) or not groups:
            raise TemplateError(f"{path}: 'groups' must be a non-empty list")
        intents: Dict[str, List[str]] = {}
        for gi, g in enumerate(groups):
            where = f"groups[{gi}]"
            try:
                action, objects, locations = g["action"], g["objects"], g["locations"]
            except (TypeError, KeyError) as e:
                raise TemplateError(f"{path}: {where}: missing key {e}") from e
            phrases = _string_list(path, f"{where}.phrases", g.get("phrases"))
            self._check_slots(path, where, phrases, {"object": None, "location": None})
            has = {
                s: any(f"{{{s}}}" in ph for ph in phrases)
                for s in ("object", "location")
            }
            for obj in objects:
                for loc in locations:
                    value = {"object": obj, "location": loc}
                    need = {s: has[s] and value[s] != "none" for s in value}
                    ok = [
                        ph.format(**value)
                        for ph in phrases
                        if all((f"{{{s}}}" in ph) == need[s] for s in value)
                    ]
                    label = f"in:{action}_{obj}_{loc}"
                    if not ok:
                        raise TemplateError(f"{path}: {where}: no phrase fits {label}")
                    if label in intents:
                        raise TemplateError(f"{path}: {where}: duplicate label {label}")
                    intents[label] = ok
        return intents

    # ------------------------------------------------------------------ inventories
    @property
    def digest(self) -> str:
        """SHA-256 over the template files (part of the generation parameters)."""
        h = hashlib.sha256()
        for name in self.FILES:
            h.update(name.encode())
            h.update((self.directory / name).read_bytes())
        return h.hexdigest()

    @typechecked
    def labels(self) -> Dict[str, List[str]]:
        """Every task's label inventory (all labels the templates can produce).

        Classification tasks list their first-token labels; ``ner_slurp`` lists its
        ``<entity:TYPE>`` tags; ``asr_librispeech`` has none.
        """
        return {
            "er_iemocap": [f"em:{e}" for e in self.emotions],
            "ic_slurp": sorted(self.slurp_intents),
            "asr_librispeech": [],
            "ic_fsc": sorted(self.fsc_intents),
            "ic_snips": sorted(self.snips_intents),
            "ner_slurp": [f"<entity:{t}>" for t in sorted(self.slurp_entities)],
            "scr_speechcommands": [f"command:{w}" for w in self.scr_commands]
            + [f"command:{UNKNOWN}", f"command:{SILENCE}"],
        }

    # ------------------------------------------------------------------ generation
    def spoken_form(self, transcript: str) -> str:
        """The TTS input of a lower-case transcript (lexicon applied word by word)."""
        return " ".join(self.lexicon.get(w, w) for w in transcript.split())

    def _fill(
        self, template: str, values: Dict[str, List[str]], rng: np.random.Generator
    ) -> Tuple[str, List[Tuple[str, str]]]:
        """Fill ``{slot}`` s left to right; returns the sentence and (slot, filler) pairs."""
        filled: List[Tuple[str, str]] = []

        def sub(m: re.Match) -> str:
            choices = values[m.group(1)]
            filler = choices[int(rng.integers(len(choices)))]
            filled.append((m.group(1), filler))
            return filler

        return _SLOT.sub(sub, template), filled

    def _expand(self, symbol: str, rng: np.random.Generator, depth: int) -> str:
        alts = self.asr_rules[symbol]
        phrasal = any(_SLOT.search(a) for a in alts)
        if phrasal and depth >= self.asr_max_depth:
            alt = alts[0]  # the non-recursive fallback; word lists are never limited
        else:
            alt = alts[int(rng.integers(len(alts)))]
        return _SLOT.sub(
            lambda m: self._expand(m.group(1), rng, depth + int(phrasal)), alt
        )

    @staticmethod
    def _label_cycle(
        labels: Sequence[str], n: int, rng: np.random.Generator, shuffle: bool
    ) -> List[str]:
        order = list(labels)
        if shuffle:
            order = [order[i] for i in rng.permutation(len(order))]
        return [order[i % len(order)] for i in range(n)]

    @typechecked
    def sample(
        self,
        task: str,
        n: int,
        rng: np.random.Generator,
        exclude: Optional[Set[str]] = None,
    ) -> List[Sample]:
        """Draw ``n`` samples of one task.

        Classes are balanced by cycling through the label inventory (in a random order, except
        ``er_iemocap`` and ``scr_speechcommands`` which cycle in inventory order, so that a
        tiny set still holds ``_silence_`` and ``_unknown_``). ``er_iemocap`` renders each
        sentence in all emotions in turn.

        Args:
            task: Task name.
            n: Number of samples.
            rng: Random generator (the only source of randomness).
            exclude: ``asr_librispeech`` only: transcripts not to produce (updated in
                place with the new ones), to keep ASR sets' sentences disjoint.

        Returns:
            The samples, in generation order.
        """
        if task not in PROMPTS:
            raise ValueError(f"unknown task {task!r}; expected one of {list(PROMPTS)}")
        out: List[Sample] = []
        if task == "er_iemocap":
            n_emo = len(self.emotions)
            order = rng.permutation(len(self.er_sentences))
            for i in range(n):
                sent = self.er_sentences[order[(i // n_emo) % len(order)]]
                emo = self.emotions[i % n_emo]
                out.append(
                    Sample(
                        task,
                        f"em:{emo} SEP {sent}",
                        self.spoken_form(sent),
                        f"em:{emo}",
                        emo,
                    )
                )
        elif task in ("ic_slurp", "ner_slurp"):
            intents = self._label_cycle(
                sorted(self.slurp_intents), n, rng, shuffle=True
            )
            for intent in intents:
                phrases = self.slurp_intents[intent]
                tpl = phrases[int(rng.integers(len(phrases)))]
                sent, ents = self._fill(tpl, self.slurp_entities, rng)
                if task == "ic_slurp":
                    out.append(
                        Sample(
                            task, f"{intent} SEP {sent}", self.spoken_form(sent), intent
                        )
                    )
                else:
                    chunks = [f"<entity:{t}> <FILL> {f}" for t, f in ents]
                    out.append(
                        Sample(
                            task,
                            " <SEP> ".join(chunks + [sent]),
                            self.spoken_form(sent),
                        )
                    )
        elif task == "asr_librispeech":
            seen = exclude if exclude is not None else set()
            for _ in range(n):
                for _attempt in range(1000):
                    sent = " ".join(self._expand(self.asr_start, rng, 0).split())
                    if sent.upper() not in seen:
                        break
                else:
                    raise TemplateError(
                        "asr grammar cannot produce enough distinct sentences"
                    )
                seen.add(sent.upper())
                out.append(Sample(task, sent.upper(), self.spoken_form(sent)))
        elif task == "ic_fsc":
            for label in self._label_cycle(
                sorted(self.fsc_intents), n, rng, shuffle=True
            ):
                phrases = self.fsc_intents[label]
                sent = phrases[int(rng.integers(len(phrases)))]
                out.append(
                    Sample(task, f"{label} SEP {sent}", self.spoken_form(sent), label)
                )
        elif task == "ic_snips":
            for intent in self._label_cycle(
                sorted(self.snips_intents), n, rng, shuffle=True
            ):
                phrases = self.snips_intents[intent]
                tpl = phrases[int(rng.integers(len(phrases)))]
                sent, _ = self._fill(tpl, self.snips_slots, rng)
                out.append(
                    Sample(task, f"{intent} SEP {sent}", self.spoken_form(sent), intent)
                )
        else:  # scr_speechcommands
            classes = [SILENCE, UNKNOWN] + list(self.scr_commands)
            for cls in self._label_cycle(classes, n, rng, shuffle=False):
                if cls == SILENCE:
                    out.append(
                        Sample(
                            task,
                            f"command:{SILENCE}",
                            "",
                            f"command:{SILENCE}",
                            "silence",
                        )
                    )
                elif cls == UNKNOWN:
                    word = self.scr_unknown[int(rng.integers(len(self.scr_unknown)))]
                    out.append(
                        Sample(task, f"command:{UNKNOWN}", word, f"command:{UNKNOWN}")
                    )
                else:
                    out.append(Sample(task, f"command:{cls}", cls, f"command:{cls}"))
        return out
