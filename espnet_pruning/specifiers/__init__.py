"""Task specifiers: each task's prompt, target format and metric, extensible in YAML.

A task specifier is what UniverSLU calls the prompt ``<|en|> <|ic|> <|slurp|>`` plus what
the project needs to train and score the task. The seven tasks of the paper ship in
``tasks.yaml`` beside this module; a user adds tasks with a YAML file of the same shape,
without code.
"""

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml
from typeguard import typechecked

from espnet_pruning.errors import DataError, InputError
from espnet_pruning.fileio import read_kaldi_map
from espnet_pruning.whisper.tokenizer import FIRST_ADDED_ID, whisper_base_tokens

BUILTIN_FILE = Path(__file__).with_name("tasks.yaml")
TARGETS = ("classification", "transcript", "entities")
METRICS = ("accuracy", "macro_f1", "wer", "slu_f1")
#: Figures reported beside the metric (``espnet_pruning.scoring.registry.FIGURES``).
FIGURES = ("slurp_intent",)
#: Tokens the entity target format uses besides the ``<entity:TYPE>`` tags.
ENTITY_SEPARATORS = ("<SEP>", "<FILL>")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENTITY = re.compile(r"^<entity:[^\s<>]+>$")


class SpecifierError(InputError):
    """A task specifier file or a task name is invalid."""


@dataclasses.dataclass(frozen=True)
class TaskSpecifier:
    """One task of the multi-task model.

    Attributes:
        name: Task id, e.g. ``ic_slurp`` (used in ``utt2category``, mask files, results).
        prompt: Prompt tokens, e.g. ``("<|en|>", "<|ic|>", "<|slurp|>")``.
        target: ``classification``, ``transcript`` or ``entities``.
        metric: ``accuracy``, ``macro_f1``, ``wer`` or ``slu_f1``.
        labels: Known labels of a classification task (more may come from the data).
        description: Free text.
        figures: Figures scored beside the metric, e.g. ``("slurp_intent",)`` (SLURP's
            scenario and action accuracy).
    """

    name: str
    prompt: Tuple[str, ...]
    target: str
    metric: str
    labels: Tuple[str, ...] = ()
    description: str = ""
    figures: Tuple[str, ...] = ()

    def label_of(self, text: str) -> Optional[str]:
        """The label of a target text (its first word) for classification tasks."""
        if self.target != "classification":
            return None
        words = text.split()
        return words[0] if words else None

    def special_tokens_of(self, text: str) -> List[str]:
        """Tokens of ``text`` that must be single added tokens (labels, entity tags)."""
        if self.target == "classification":
            label = self.label_of(text)
            return [label] if label else []
        if self.target == "entities":
            return [
                w for w in text.split() if w in ENTITY_SEPARATORS or _ENTITY.match(w)
            ]
        return []


_FIELDS = {f.name for f in dataclasses.fields(TaskSpecifier)}


@typechecked
def _parse_task(name: str, entry: Any, source: str) -> TaskSpecifier:
    where = f"{source}: tasks.{name}"
    if not _NAME.match(name):
        raise SpecifierError(f"{where}: task names may use letters, digits, _ . - only")
    if not isinstance(entry, Mapping):
        raise SpecifierError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - (_FIELDS - {"name"}))
    if unknown:
        raise SpecifierError(f"{where}: unknown key(s) {unknown}")
    for key in ("prompt", "target", "metric"):
        if key not in entry:
            raise SpecifierError(f"{where}: missing key '{key}'")
    prompt = entry["prompt"]
    prompt = tuple(prompt.split() if isinstance(prompt, str) else prompt)
    if not prompt or not all(
        isinstance(t, str) and t.startswith("<|") and t.endswith("|>") for t in prompt
    ):
        raise SpecifierError(
            f"{where}.prompt: expected tokens like '<|en|> <|ic|> <|slurp|>', got {prompt}"
        )
    if entry["target"] not in TARGETS:
        raise SpecifierError(f"{where}.target: {entry['target']!r} not in {TARGETS}")
    if entry["metric"] not in METRICS:
        raise SpecifierError(f"{where}.metric: {entry['metric']!r} not in {METRICS}")
    labels = tuple(str(x) for x in entry.get("labels") or ())
    if labels and entry["target"] != "classification":
        raise SpecifierError(f"{where}.labels: only classification tasks have labels")
    figures = entry.get("figures") or ()
    if not isinstance(figures, (list, tuple)) or any(f not in FIGURES for f in figures):
        raise SpecifierError(f"{where}.figures: expected a list of names of {FIGURES}")
    return TaskSpecifier(
        name=name,
        prompt=prompt,
        target=entry["target"],
        metric=entry["metric"],
        labels=labels,
        description=str(entry.get("description", "")),
        figures=tuple(figures),
    )


class TaskRegistry:
    """An ordered set of task specifiers with lookup by name and by prompt.

    Args:
        tasks: The specifiers; names and prompts must be unique.
    """

    @typechecked
    def __init__(self, tasks: Sequence[TaskSpecifier]):
        self._tasks: Dict[str, TaskSpecifier] = {}
        self._by_prompt: Dict[Tuple[str, ...], str] = {}
        for task in tasks:
            if task.name in self._tasks:
                raise SpecifierError(f"task {task.name!r} is defined twice")
            if task.prompt in self._by_prompt:
                raise SpecifierError(
                    f"tasks {self._by_prompt[task.prompt]!r} and {task.name!r} share "
                    f"the prompt {' '.join(task.prompt)!r}"
                )
            self._tasks[task.name] = task
            self._by_prompt[task.prompt] = task.name

    @classmethod
    @typechecked
    def from_dict(cls, content: Any, source: str = "task specifiers") -> "TaskRegistry":
        """Build from the parsed YAML content ``{"tasks": {name: {...}}}``."""
        if not isinstance(content, Mapping) or set(content) != {"tasks"}:
            raise SpecifierError(f"{source}: expected one top-level key 'tasks'")
        tasks = content["tasks"]
        if not isinstance(tasks, Mapping) or not tasks:
            raise SpecifierError(f"{source}: 'tasks' must be a non-empty mapping")
        return cls([_parse_task(str(n), e, source) for n, e in tasks.items()])

    @classmethod
    @typechecked
    def load(
        cls,
        path: Optional[Union[str, os.PathLike]] = None,
        extend_builtin: bool = True,
    ) -> "TaskRegistry":
        """Load the built-in tasks, optionally extended (or overridden) by a YAML file.

        Args:
            path: A user YAML file; None for the built-in seven tasks only.
            extend_builtin: Keep the built-in tasks and add/replace those of ``path``.

        Raises:
            SpecifierError: The file is missing, not YAML, or has an invalid entry (the
                message names the file and the key).
        """
        builtin = _read_yaml(BUILTIN_FILE)
        if path is None:
            return cls.from_dict(builtin, str(BUILTIN_FILE))
        user = _read_yaml(Path(path))
        cls.from_dict(user, str(path))  # validate the user file on its own first
        if not extend_builtin:
            return cls.from_dict(user, str(path))
        merged = {"tasks": {**builtin["tasks"], **user["tasks"]}}
        return cls.from_dict(merged, str(path))

    def to_dict(self) -> Dict[str, Any]:
        """The YAML-able content (round-trips through :meth:`from_dict`)."""
        out = {}
        for t in self._tasks.values():
            entry = {
                "description": t.description,
                "prompt": " ".join(t.prompt),
                "target": t.target,
                "metric": t.metric,
            }
            if t.labels:
                entry["labels"] = list(t.labels)
            if t.figures:
                entry["figures"] = list(t.figures)
            out[t.name] = entry
        return {"tasks": out}

    @property
    def names(self) -> List[str]:
        """Task names in definition order."""
        return list(self._tasks)

    def __iter__(self):
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __getitem__(self, name: str) -> TaskSpecifier:
        if name not in self._tasks:
            raise SpecifierError(
                f"unknown task {name!r}; known tasks: {', '.join(self._tasks)}"
            )
        return self._tasks[name]

    def subset(self, names: Iterable[str]) -> "TaskRegistry":
        """A registry of the named tasks only (each must exist)."""
        return TaskRegistry([self[n] for n in names])

    def task_of_prompt(self, prompt: Union[str, Sequence[str]]) -> str:
        """The task whose prompt is ``prompt`` (a string or a token sequence)."""
        key = tuple(prompt.split() if isinstance(prompt, str) else prompt)
        if key not in self._by_prompt:
            raise SpecifierError(
                f"prompt {' '.join(key)!r} belongs to no known task "
                f"({', '.join(self._tasks)})"
            )
        return self._by_prompt[key]

    @typechecked
    def tasks_of_prompts(
        self,
        prompt_file: Union[str, os.PathLike],
        utt2category_file: Optional[Union[str, os.PathLike]] = None,
    ) -> Dict[str, str]:
        """The task of every utterance of a data set, decided by its prompt.

        This is the one place that answers "which task is this utterance?": the
        model routes batches by the prompt and ESPnet's batch sampler groups them by
        ``utt2category``, so both files must agree, and are checked here once.

        Args:
            prompt_file: Kaldi-style ``prompt`` file (utterance id → prompt tokens).
            utt2category_file: The data set's ``utt2category``, checked against the
                prompts when given and present.

        Returns:
            Utterance id → task name.

        Raises:
            DataError: Naming the file and line of an unknown prompt, or the utterance
                whose ``utt2category`` entry disagrees with its prompt or is missing.
        """
        tasks: Dict[str, str] = {}
        for n, (uid, prompt) in enumerate(read_kaldi_map(prompt_file).items(), 1):
            try:
                tasks[uid] = self.task_of_prompt(prompt)
            except SpecifierError as e:
                raise DataError(f"{prompt_file}:{n}: utterance {uid}: {e}") from e
        if utt2category_file is not None and Path(utt2category_file).is_file():
            categories = read_kaldi_map(utt2category_file)
            for uid, task in tasks.items():
                if categories.get(uid) != task:
                    raise DataError(
                        f"{utt2category_file}: utterance {uid} is "
                        f"{categories.get(uid)!r} but its prompt is task {task!r}"
                    )
        return tasks

    def added_tokens(self, texts: Iterable[Tuple[str, str]] = ()) -> List[str]:
        """Tokens to add to Whisper's vocabulary, in a deterministic order.

        Prompt tokens first (tasks in definition order), then each task's declared labels,
        then labels and entity tags found in ``texts`` (pairs of task name and target
        text), sorted. Whisper's own special tokens (``<|en|>``…) are left out.

        Args:
            texts: ``(task, text)`` pairs from the training data.

        Returns:
            The added tokens without duplicates.
        """
        whisper_specials = set(whisper_base_tokens()[:FIRST_ADDED_ID][50257:])
        ordered: List[str] = []
        seen = set(whisper_specials)

        def add(token: str) -> None:
            if token not in seen:
                seen.add(token)
                ordered.append(token)

        for task in self:
            for token in task.prompt:
                add(token)
        if any(t.target == "entities" for t in self):
            for token in ENTITY_SEPARATORS:
                add(token)
        for task in self:
            for label in task.labels:
                add(label)
        found = set()
        for name, text in texts:
            found.update(self[name].special_tokens_of(text))
        for token in sorted(found):
            add(token)
        return ordered


@typechecked
def _read_yaml(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise SpecifierError(f"{path}: task specifier file not found")
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise SpecifierError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(content, dict):
        raise SpecifierError(f"{path}: expected a mapping with key 'tasks'")
    return content
