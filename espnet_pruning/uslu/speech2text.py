"""Decoding a trained UniverSLU model with one task's prompt (greedy or beam search)."""

import os
import re
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
from espnet2.legacy.nets.scorers.length_bonus import LengthBonus
from typeguard import typechecked

from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.whisper.tokenizer import NO_TIMESTAMPS, SOT, WhisperTokenizer

#: Prompt-like tokens (``<|…|>``) never reach a hypothesis text.
_PROMPT_TOKEN = re.compile(r"^<\|[^|]*\|>$")


class Speech2Text:
    """Decode speech with a UniverSLU model and one task's prompt.

    The beam search is primed with ``<|startoftranscript|> <prompt> <|notimestamps|>`` as in
    training; hypotheses exclude the primer and any other ``<|…|>`` token.

    Args:
        train_config: ``config.yaml`` of the training run.
        model_file: Model checkpoint (``*.pth``).
        task: Task name; its prompt comes from the run's task specifiers.
        device: ``cpu`` or ``cuda``.
        beam_size: 1 for greedy search.
        penalty: Length bonus weight.
        maxlenratio: 0: up to the encoder length; < 0: at most ``-maxlenratio`` tokens;
            > 0: ``maxlenratio`` × encoder length.
        minlenratio: Minimum length ratio.
        nbest: Number of hypotheses returned.
        normalize_length: Rank ended hypotheses by length-normalised score.
        mask_dir: Mask set to decode the task's subnetwork with (overrides the one in
            ``train_config``, if any).
    """

    @typechecked
    def __init__(
        self,
        train_config: Union[str, os.PathLike],
        model_file: Optional[Union[str, os.PathLike]],
        task: str,
        device: str = "cpu",
        beam_size: int = 1,
        penalty: float = 0.0,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        nbest: int = 1,
        normalize_length: bool = False,
        mask_dir: Optional[Union[str, os.PathLike]] = None,
    ):
        model, train_args = USLUTask.build_model_from_file(
            train_config, model_file, device
        )
        if mask_dir is not None:
            from espnet_pruning.pruning.storage import load_masks

            model.attach_masks(load_masks(mask_dir))
        if model.masks is not None:
            # Decode the task's subnetwork: m ⊙ W materialised once, then dense speed.
            model.bake_task(task)
        self.model = model.eval()
        self.train_args = train_args
        self.spec = USLUTask.task_registry(train_args)[task]
        self.tokenizer = WhisperTokenizer(model.token_list)
        t2i = self.tokenizer.token2id
        self.primer = (
            [t2i[SOT]]
            + self.tokenizer.tokens2ids(self.spec.prompt)
            + [t2i[NO_TIMESTAMPS]]
        )
        vocab = len(model.token_list)
        self.beam_search = BatchBeamSearch(
            scorers=dict(decoder=model.decoder, length_bonus=LengthBonus(vocab)),
            weights=dict(decoder=1.0, length_bonus=penalty),
            beam_size=beam_size,
            vocab_size=vocab,
            sos=model.sos,
            eos=model.eos,
            token_list=None,
            pre_beam_score_key="full",
            hyp_primer=self.primer,
            normalize_length=normalize_length,
        ).to(device)
        self.beam_search.eval()
        self.device = device
        self.maxlenratio = maxlenratio
        self.minlenratio = minlenratio
        self.nbest = nbest

    def hypothesis_ids(self, yseq: List[int]) -> List[int]:
        """Token ids of a hypothesis without primer, end token and prompt-like tokens."""
        ids = [i for i in yseq[len(self.primer) :] if i != self.model.eos]
        return [i for i in ids if not _PROMPT_TOKEN.match(self.tokenizer.token_list[i])]

    @torch.no_grad()
    def __call__(
        self, speech: Union[np.ndarray, torch.Tensor]
    ) -> List[Tuple[str, List[str], List[int], float]]:
        """Decode one utterance.

        Args:
            speech: Waveform (T,) at 16 kHz.

        Returns:
            Up to ``nbest`` tuples ``(text, tokens, token_ids, score)``.
        """
        speech = torch.as_tensor(speech, dtype=torch.float32).reshape(1, -1)
        lengths = torch.tensor([speech.size(1)])
        enc, _ = self.model.encode(speech.to(self.device), lengths.to(self.device))
        hyps = self.beam_search(
            x=enc[0], maxlenratio=self.maxlenratio, minlenratio=self.minlenratio
        )
        results = []
        for hyp in hyps[: self.nbest]:
            ids = self.hypothesis_ids(hyp.yseq.tolist())
            tokens = self.tokenizer.ids2tokens(ids)
            results.append(
                (self.tokenizer.tokens2text(tokens), tokens, ids, float(hyp.score))
            )
        return results
