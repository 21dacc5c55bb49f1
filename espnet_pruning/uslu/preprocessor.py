"""Turns a data-set entry into model inputs: the prompt becomes part of the target.

As in UniverSLU (ESPnet's ``CommonPreprocessor`` with ``use_lang_prompt``), the target of
an utterance with prompt ``<|en|> <|ic|> <|slurp|>`` and text ``alarm_set SEP wake me up``
is ``<|en|> <|ic|> <|slurp|> <|notimestamps|> alarm_set ĠS EP Ġwake Ġme Ġup``; the model
adds ``<|startoftranscript|>``/``<|endoftext|>`` around it. The prompt ids are also passed
on as ``prompt`` so that the model knows each utterance's task.
"""

from typing import Dict, Optional, Sequence, Union

import numpy as np
from espnet2.train.preprocessor import AbsPreprocessor
from typeguard import typechecked

from espnet_pruning.errors import DataError  # noqa: F401 (re-exported)
from espnet_pruning.specifiers import SpecifierError, TaskRegistry
from espnet_pruning.whisper.tokenizer import NO_TIMESTAMPS, WhisperTokenizer


class USLUPreprocessor(AbsPreprocessor):
    """Tokenise prompt and text of one utterance with Whisper's vocabulary.

    Args:
        train: Training mode (unused: the same processing in training and validation).
        token_list: Token list (path or list) written by ``uslu_token_list``.
        tasks: Registry of the tasks the data may contain.
        speech_name: Data key of the waveform.
        text_name: Data key of the target text.
        prompt_name: Data key of the prompt.
    """

    @typechecked
    def __init__(
        self,
        train: bool,
        token_list: Union[str, Sequence[str]],
        tasks: TaskRegistry,
        speech_name: str = "speech",
        text_name: str = "text",
        prompt_name: str = "prompt",
    ):
        super().__init__(train)
        self.tokenizer = WhisperTokenizer(token_list)
        self.tasks = tasks
        self.speech_name = speech_name
        self.text_name = text_name
        self.prompt_name = prompt_name
        self.no_timestamps = self.tokenizer.token2id[NO_TIMESTAMPS]
        # Prompt ids per task, checked once: every prompt token must be one known token.
        self.prompt_ids: Dict[str, np.ndarray] = {}
        for task in tasks:
            try:
                ids = self.tokenizer.tokens2ids(task.prompt)
            except KeyError as e:
                raise DataError(
                    f"task {task.name}: prompt token {e.args[0]}; the token list was "
                    "written for other tasks"
                ) from e
            self.prompt_ids[task.name] = np.array(ids, dtype=np.int64)

    def task_of(self, uid: str, prompt: str) -> str:
        """The task an utterance belongs to, from its prompt."""
        try:
            return self.tasks.task_of_prompt(prompt)
        except SpecifierError as e:
            raise DataError(f"utterance {uid}: {e}") from e

    def _check_special_tokens(self, uid: str, task: str, text: str) -> None:
        # A label missing from the token list would silently become BPE pieces.
        for token in self.tasks[task].special_tokens_of(text):
            if token not in self.tokenizer.token2id:
                raise DataError(
                    f"utterance {uid} (task {task}): label/tag {token!r} is not in the "
                    "token list; rewrite the token list with this data"
                )

    def __call__(
        self, uid: str, data: Dict[str, Union[str, np.ndarray]]
    ) -> Dict[str, np.ndarray]:
        """Process one utterance (see the module docstring)."""
        out = dict(data)
        if self.speech_name in out:
            speech = np.asarray(out[self.speech_name])
            if speech.ndim == 2 and 1 in speech.shape:
                speech = speech.reshape(-1)
            out[self.speech_name] = speech.astype(np.float32)
        prompt_ids: Optional[np.ndarray] = None
        if self.prompt_name in out:
            task = self.task_of(uid, str(out[self.prompt_name]))
            prompt_ids = self.prompt_ids[task]
            out[self.prompt_name] = prompt_ids
            if self.text_name in out:
                self._check_special_tokens(uid, task, str(out[self.text_name]))
        if self.text_name in out:
            if prompt_ids is None:
                raise DataError(f"utterance {uid}: has a text but no prompt")
            text = str(out[self.text_name])
            try:
                text_ids = self.tokenizer.text2ids(text)
            except KeyError as e:
                raise DataError(f"utterance {uid}: {e.args[0]}") from e
            target = np.concatenate(
                [prompt_ids, [self.no_timestamps], np.asarray(text_ids, np.int64)]
            )
            out[self.text_name] = target.astype(np.int64)
        return out
