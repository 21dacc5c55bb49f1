"""Decoding a trained UniverSLU model with one task's prompt (greedy or beam search)."""

import os
import re
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from espnet2.legacy.nets.scorers.length_bonus import LengthBonus
from torch.nn.utils.rnn import pad_sequence
from typeguard import typechecked
from whisper.audio import N_FFT

from espnet_pruning.errors import DataError, InputError
from espnet_pruning.inference.packing import unpack_system
from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.pruning.structured import compile_masked
from espnet_pruning.pruning.switch import TaskSwitcher
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.whisper.beam_search import WhisperBeamSearch
from espnet_pruning.whisper.decoder import FullPrefixScorer
from espnet_pruning.whisper.tokenizer import NO_TIMESTAMPS, SOT, WhisperTokenizer

#: One decoded hypothesis: ``(text, tokens, token_ids, score)``.
Result = Tuple[str, List[str], List[int], float]

#: Prompt-like tokens (``<|…|>``) never reach a hypothesis text.
_PROMPT_TOKEN = re.compile(r"^<\|[^|]*\|>$")


class Speech2Text:
    """Decode speech with a UniverSLU model and one task's prompt.

    The beam search is primed with ``<|startoftranscript|> <prompt> <|notimestamps|>`` as in
    training; hypotheses exclude the primer and any other ``<|…|>`` token. The output
    length never exceeds Whisper's text context minus the primer
    (:class:`~espnet_pruning.whisper.beam_search.WhisperBeamSearch`). The decoder caches
    the prefix's keys/values and the encoder memory in the beam-search states;
    :meth:`decode_batch` decodes several utterances together with the same result as
    one at a time.

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
        compile_structures: With a structured mask set (HJ-Pruning): decode each task
            with a physically smaller copy of the model, its dropped heads and FFN units
            removed (:func:`~espnet_pruning.pruning.structured.compile_masked`), instead
            of the masked weights.
        structure_file: The kept heads and FFN units of a compiled model
            (``uslu_export --formats compiled``; ``model_file`` holds its weights).
        mask_dir: Mask set to decode the task's subnetwork with (overrides the one in
            ``train_config``, if any).
        prompt: Prompt tokens for a task not in the run's specifiers (see
            :meth:`set_task`).
        kv_cache: False: score every step by running the whole prefix again
            (:class:`~espnet_pruning.whisper.decoder.FullPrefixScorer`; same result,
            slower; the reference for tests and benchmarks).
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
        kv_cache: bool = True,
        prompt: Optional[str] = None,
        compile_structures: bool = False,
        structure_file: Optional[Union[str, os.PathLike]] = None,
    ):
        model, train_args = USLUTask.build_model_from_file(
            train_config, model_file, device, structure_file=structure_file
        )
        # A task's subnetwork m ⊙ θ is written into the weights (dense speed); the
        # switcher keeps θ so that set_task can switch in one pass.
        masks = None
        if mask_dir is not None:
            masks = load_masks(mask_dir)
        elif model.masked_training is not None:
            masks = model.masked_training.masks
        model.masked_training = None
        # A structured mask set (HJ-Pruning) can instead give each task a physically
        # smaller model: its dropped heads and FFN units removed.
        self._dense: Optional[torch.nn.Module] = None
        self._masks = None
        if compile_structures:
            if masks is None:
                raise InputError("compile_structures needs a mask set (--mask_dir)")
            self._dense, self._masks = model.eval(), masks
            self.switcher = None
        else:
            self.switcher = TaskSwitcher(model, masks) if masks is not None else None
        self.model = model.eval()
        self.train_args = train_args
        self.registry = USLUTask.task_registry(train_args)
        self.tokenizer = WhisperTokenizer(model.token_list)
        self.device = device
        self.kv_cache = kv_cache
        self.primer: List[int] = []
        self.set_search(
            beam_size=beam_size,
            penalty=penalty,
            maxlenratio=maxlenratio,
            minlenratio=minlenratio,
            nbest=nbest,
            normalize_length=normalize_length,
        )
        self.set_task(task, prompt)

    @classmethod
    def from_pretrained(
        cls,
        packed: Union[str, os.PathLike],
        task: str,
        prompt: Optional[str] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        **kwargs,
    ) -> "Speech2Text":
        """Decode with a packed system (``uslu_pack``): a zip or its unpacked directory.

        The archive's checksums are verified; its mask set (if any) gives each task its
        subnetwork.

        Args:
            packed: The zip, or a directory it was unpacked into.
            task: Task to decode (see :meth:`set_task`; any name with ``prompt``).
            prompt: Prompt tokens for a task not in the system's specifiers.
            cache_dir: Where a zip is unpacked (default: beside it).
            **kwargs: Further options of :class:`Speech2Text` (``beam_size``, …).

        Raises:
            PackError: Missing or corrupt archive.
        """
        files = unpack_system(packed, cache_dir)
        return cls(
            files["train_config"],
            files["model_file"],
            task,
            mask_dir=files.get("mask_dir"),
            prompt=prompt,
            **kwargs,
        )

    @typechecked
    def set_search(
        self,
        beam_size: int = 1,
        penalty: float = 0.0,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        nbest: int = 1,
        normalize_length: bool = False,
    ) -> None:
        """Search with these settings from now on (the arguments of the same names of
        :class:`Speech2Text`); the model, task and prompt stay. Costs no model load: a
        decoding job reuses one model for every test set, each with its own settings."""
        self._search = dict(
            beam_size=beam_size,
            penalty=penalty,
            maxlenratio=maxlenratio,
            minlenratio=minlenratio,
            nbest=nbest,
            normalize_length=normalize_length,
        )
        model = self.model
        vocab = len(model.token_list)
        decoder = model.decoder if self.kv_cache else FullPrefixScorer(model.decoder)
        self.beam_search = WhisperBeamSearch(
            n_text_ctx=model.decoder.n_text_ctx,
            scorers=dict(decoder=decoder, length_bonus=LengthBonus(vocab)),
            weights=dict(decoder=1.0, length_bonus=penalty),
            beam_size=beam_size,
            vocab_size=vocab,
            sos=model.sos,
            eos=model.eos,
            token_list=None,
            pre_beam_score_key="full",
            hyp_primer=None,
            normalize_length=normalize_length,
        ).to(self.device)
        self.beam_search.eval()
        if self.primer:
            self.beam_search.set_hyp_primer(list(self.primer))
        self.maxlenratio = maxlenratio
        self.minlenratio = minlenratio
        self.nbest = nbest

    def set_task(self, task: str, prompt: Optional[str] = None) -> None:
        """Decode with ``task``'s prompt and subnetwork from now on.

        Switching costs one pass over the masked weights (``m_task ⊙ θ`` written into
        the parameters) and nothing without a mask set.

        Args:
            task: A task of the run's specifiers, or any name together with ``prompt``.
            prompt: Prompt tokens, e.g. ``"<|en|> <|ic|> <|slurp|>"`` (overrides the
                task's); the subnetwork is the task's mask if the mask set has one,
                else the dense model.

        Raises:
            InputError: Unknown task without a prompt, or a prompt token not in the
                token list.
        """
        if prompt is None:
            tokens = self.registry[task].prompt  # an unknown task is an error
        else:
            tokens = prompt.split()
        try:
            ids = self.tokenizer.tokens2ids(tokens)
        except KeyError as e:
            raise InputError(f"prompt of {task}: {e.args[0]}") from None
        t2i = self.tokenizer.token2id
        self.beam_search.set_hyp_primer([t2i[SOT]] + ids + [t2i[NO_TIMESTAMPS]])
        self.primer = self.beam_search.hyp_primer
        self.task = task
        if self.switcher is not None:
            self.switcher.switch(task)
        if self._dense is not None:
            self._compile(task)

    def _compile(self, task: str) -> None:
        """Decode with ``task``'s compiled model (the dense one for a task without a
        mask); the search is rebuilt around it."""
        if task not in self._masks:
            self.model = self._dense
        else:
            try:
                self.model = compile_masked(self._dense, self._masks.mask(task)).eval()
            except ValueError as e:
                raise InputError(
                    f"{self._masks.source or 'mask set'}: task {task}: cannot compile "
                    f"it ({e})"
                ) from None
        self.set_search(**self._search)

    def hypothesis_ids(self, yseq: List[int]) -> List[int]:
        """Token ids of a hypothesis without primer, end token and prompt-like tokens."""
        ids = [i for i in yseq[len(self.primer) :] if i != self.model.eos]
        return [i for i in ids if not _PROMPT_TOKEN.match(self.tokenizer.token_list[i])]

    def check_speech(self, speech: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
        """The waveform as a float tensor (T,), or a clear error for unusable audio.

        Raises:
            DataError: Not one channel, too short for one STFT frame, or not finite.
        """
        speech = torch.as_tensor(speech, dtype=torch.float32)
        if speech.dim() == 2 and 1 in speech.shape:
            speech = speech.reshape(-1)
        if speech.dim() != 1:
            raise DataError(
                f"audio of shape {tuple(speech.shape)}: expected one channel"
            )
        if speech.numel() <= N_FFT // 2 and not self.model.encoder.do_pad_trim:
            raise DataError(
                f"audio of {speech.numel()} samples: Whisper's features need more "
                f"than {N_FFT // 2}"
            )
        if not bool(torch.isfinite(speech).all()):
            raise DataError("audio has NaN or infinite samples")
        return speech

    def _encode(self, speeches: List[torch.Tensor]) -> List[torch.Tensor]:
        # Whisper's encoder attends to every frame, so utterances of different
        # lengths are encoded one by one (a padded batch would change the states);
        # padded to 30 s (do_pad_trim) they have one length and go together.
        device = self.device
        if self.model.encoder.do_pad_trim and len(speeches) > 1:
            lengths = torch.tensor([s.numel() for s in speeches])
            batch = pad_sequence(speeches, batch_first=True).to(device)
            enc, enc_lens = self.model.encode(batch, lengths.to(device))
            return [e[: int(n)] for e, n in zip(enc, enc_lens)]
        return [
            self.model.encode(
                s.reshape(1, -1).to(device), torch.tensor([s.numel()], device=device)
            )[0][0]
            for s in speeches
        ]

    def _results(self, hyps) -> List[Result]:
        results = []
        for hyp in hyps[: self.nbest]:
            ids = self.hypothesis_ids(hyp.yseq.tolist())
            tokens = self.tokenizer.ids2tokens(ids)
            results.append(
                (self.tokenizer.tokens2text(tokens), tokens, ids, float(hyp.score))
            )
        return results

    @torch.no_grad()
    def decode_batch(
        self, speeches: Sequence[Union[np.ndarray, torch.Tensor]]
    ) -> List[List[Result]]:
        """Decode several utterances in one beam search (same result as one by one).

        Args:
            speeches: Waveforms (T,) at 16 kHz.

        Returns:
            Per utterance, up to ``nbest`` tuples ``(text, tokens, token_ids, score)``.

        Raises:
            DataError: For unusable audio (:meth:`check_speech`).
        """
        speeches = [self.check_speech(s) for s in speeches]
        encs = self._encode(speeches)
        kwargs = dict(maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
        if len(encs) == 1:
            return [self._results(self.beam_search(x=encs[0], **kwargs))]
        lengths = torch.tensor([e.size(0) for e in encs], device=encs[0].device)
        x = pad_sequence(encs, batch_first=True)
        nbests = self.beam_search(x=x, x_lengths=lengths, **kwargs)
        return [self._results(hyps) for hyps in nbests]

    def __call__(self, speech: Union[np.ndarray, torch.Tensor]) -> List[Result]:
        """Decode one utterance.

        Args:
            speech: Waveform (T,) at 16 kHz.

        Returns:
            Up to ``nbest`` tuples ``(text, tokens, token_ids, score)``.
        """
        return self.decode_batch([speech])[0]
