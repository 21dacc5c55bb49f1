"""The UniverSLU model: Whisper encoder-decoder trained on prompted multi-task targets."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import th_accuracy
from espnet2.legacy.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.whisper.tokenizer import EOT, SOT


class TaskRoutingError(InputError):
    """A batch's prompts do not identify one known task where one is needed."""


class ESPnetUSLUModel(AbsESPnetModel):
    """Whisper encoder-decoder whose targets start with the task prompt.

    Each utterance's task is read from its prompt ids (``prompt`` in the batch). The model
    keeps the prompt → task table as a plain attribute (not a buffer), so checkpoints hold
    only the Whisper weights under ESPnet's names.

    Args:
        vocab_size: Token list size.
        token_list: The token list.
        encoder: Whisper encoder.
        decoder: Whisper decoder.
        task_prompts: Prompt ids of every task, by task name.
        ignore_id: Padding id of targets.
        lsm_weight: Label smoothing.
        length_normalized_loss: Normalise the loss by the number of tokens.
        sym_sos: Start token (Whisper's ``<|startoftranscript|>``).
        sym_eos: End token (Whisper's ``<|endoftext|>``).
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        token_list: Sequence[str],
        encoder: AbsEncoder,
        decoder: AbsDecoder,
        task_prompts: Dict[str, List[int]],
        ignore_id: int = -1,
        lsm_weight: float = 0.0,
        length_normalized_loss: bool = False,
        sym_sos: str = SOT,
        sym_eos: str = EOT,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_list = list(token_list)
        self.sos = self.token_list.index(sym_sos)
        self.eos = self.token_list.index(sym_eos)
        self.ignore_id = ignore_id
        self.encoder = encoder
        self.decoder = decoder
        self.lsm_weight = lsm_weight
        self.length_normalized_loss = length_normalized_loss
        self.task_names = list(task_prompts)
        self.prompt_to_task = {tuple(ids): name for name, ids in task_prompts.items()}
        # Per-task masks live outside the state dict and outside DDP's buffers.
        self._masks = None
        self._mask_cache: Dict[str, Dict[str, torch.Tensor]] = {}
        self._in_masked_call = False
        self._restriction = None
        self._window_tasks: List[str] = []
        self._trainable_key: Optional[Tuple[str, ...]] = None
        self.last_task: Optional[str] = None

    # ----------------------------------------------------------------- masks
    @property
    def masks(self):
        """The attached :class:`~espnet_pruning.pruning.masks.MaskSet` (or None)."""
        return self._masks

    def attach_masks(self, masks, restriction=None) -> None:
        """Use ``masks[task]`` for every batch of ``task`` from now on.

        Args:
            masks: A ``MaskSet`` over parameters of this model (checked).
            restriction: An ``UpdateRestriction`` to keep weights outside the active
                mask(s) unchanged by optimizer steps, or None (updates unrestricted).
        """
        masks.check_compatible(self)
        unknown = [t for t in masks.tasks if t not in self.task_names]
        if unknown:
            raise TaskRoutingError(
                f"mask set has task(s) {unknown} this model does not know "
                f"({', '.join(self.task_names)})"
            )
        self._masks = masks
        self._mask_cache = {}
        self._restriction = restriction
        self._window_tasks = []
        self._trainable_key = None

    def detach_masks(self) -> None:
        """Back to the dense model (and unrestricted updates)."""
        if self._restriction is not None:
            self._restriction.set_trainable(None)
        self._masks, self._mask_cache, self._restriction = None, {}, None
        self._trainable_key = None

    def task_mask(self, task: str, device: torch.device) -> Dict[str, torch.Tensor]:
        """The task's bool mask on ``device`` (one task kept there at a time)."""
        return self._cached_masks(task, device)[0]

    def _cached_masks(self, task: str, device: torch.device):
        # (bool masks, masks cast to the parameters' dtype) for the forward fast path.
        from espnet_pruning.pruning.apply import cast_masks

        if task not in self._masks.tasks:
            raise TaskRoutingError(
                f"no mask for task {task!r}; the mask set has "
                f"{', '.join(self._masks.tasks)}"
            )
        cached = self._mask_cache.get(task)
        if cached is None or next(iter(cached[0].values())).device != device:
            bool_masks = {n: m.to(device) for n, m in self._masks.mask(task).items()}
            cached = (bool_masks, cast_masks(self, bool_masks))
            self._mask_cache = {task: cached}
        return cached

    def on_optimizer_step(self) -> None:
        """Start a new gradient-accumulation window (called after each optimizer step)."""
        self._window_tasks = []

    def _restrict_updates_to(self, task: str, device: torch.device) -> None:
        # All batches accumulated into one optimizer step may update their tasks' masks.
        # Setting a trainable mask indexes every frozen entry, so it is done only when
        # the set of tasks changes (at task-block boundaries), not at every step.
        if task not in self._window_tasks:
            self._window_tasks.append(task)
        key = tuple(sorted(self._window_tasks))
        if key == self._trainable_key:
            return
        mask = dict(self.task_mask(task, device))
        for other in key:
            if other != task:
                for n, m in self._masks.mask(other).items():
                    mask[n] = mask[n] | m.to(device)
        self._restriction.set_trainable(mask)
        self._trainable_key = key

    def bake_task(self, task: str) -> None:
        """Write ``W ⊙ m_task`` into the weights in place and drop the masks.

        For decoding only: the model then runs dense at the task's sparsity with no
        per-step masking cost. Never use it on weights shared with training.
        """
        masks = self.task_mask(task, next(self.parameters()).device)
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, m in masks.items():
                params[name].mul_(m.to(params[name].dtype))
        self.detach_masks()

    def tasks_of_batch(
        self, prompt: torch.Tensor, prompt_lengths: torch.Tensor
    ) -> List[str]:
        """Task name of every utterance of a batch, from its prompt ids."""
        tasks = []
        for row, length in zip(prompt.tolist(), prompt_lengths.tolist()):
            key = tuple(row[:length])
            if key not in self.prompt_to_task:
                raise TaskRoutingError(
                    f"prompt ids {key} belong to no task of this model "
                    f"({', '.join(self.task_names)})"
                )
            tasks.append(self.prompt_to_task[key])
        return tasks

    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder states of a batch of waveforms."""
        encoder_out, encoder_out_lens, _ = self.encoder(speech, speech_lengths)
        return encoder_out, encoder_out_lens

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Teacher-forced loss on prompt + target tokens.

        Args:
            speech: Waveforms (B, T).
            speech_lengths: (B,).
            text: Target ids incl. the prompt (B, L), padded with -1.
            text_lengths: (B,).
            kwargs: ``prompt``/``prompt_lengths`` (the task of each utterance), ``utt_id``.

        Returns:
            Loss, stats (``loss``, ``acc``), batch size as weight.
        """
        if self._masks is not None and not self._in_masked_call:
            return self._masked_forward(
                speech, speech_lengths, text, text_lengths, **kwargs
            )
        batch_size = speech.shape[0]
        text = text[:, : text_lengths.max()]
        text = torch.where(text == -1, torch.full_like(text, self.ignore_id), text)

        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths)
        ys_in_pad, ys_out_pad = add_sos_eos(text, self.sos, self.eos, self.ignore_id)
        decoder_out, _ = self.decoder(
            encoder_out, encoder_out_lens, ys_in_pad, text_lengths + 1
        )
        loss = self.attention_loss(decoder_out, ys_out_pad)
        acc = th_accuracy(
            decoder_out.view(-1, self.vocab_size),
            ys_out_pad,
            ignore_label=self.ignore_id,
        )
        stats = dict(loss=loss.detach(), acc=acc)
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def _masked_forward(self, *args, **kwargs):
        """Forward with the batch's task mask applied out of place (``m ⊙ W``)."""
        from espnet_pruning.pruning.apply import call_with_masks

        if "prompt" not in kwargs:
            raise TaskRoutingError("a masked model needs each batch's prompt")
        tasks = set(self.tasks_of_batch(kwargs["prompt"], kwargs["prompt_lengths"]))
        if len(tasks) != 1:
            raise TaskRoutingError(
                f"batch mixes tasks {sorted(tasks)}; masked training needs task-"
                "homogeneous batches (batch_type folded with utt2category, or "
                "--iterator_type task)"
            )
        task = tasks.pop()
        device = args[0].device
        mask = self._cached_masks(task, device)[1]
        if self.training and self._restriction is not None:
            self._restrict_updates_to(task, device)
        self.last_task = task
        self._in_masked_call = True
        try:
            return call_with_masks(self, mask, *args, **kwargs)
        finally:
            self._in_masked_call = False

    def attention_loss(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Summed token cross-entropy per utterance (or per token if length-normalised).

        Same value as ESPnet's ``LabelSmoothingLoss`` without smoothing; with
        ``lsm_weight`` > 0 the smoothing mass is spread over all classes (torch's
        convention) rather than over the non-target ones. ``F.cross_entropy`` avoids the
        (batch × length × 51865) target distribution ESPnet's loss materialises, which
        dominated the step time of small models.
        """
        total = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            target.reshape(-1),
            ignore_index=self.ignore_id,
            reduction="sum",
            label_smoothing=self.lsm_weight,
        )
        if self.length_normalized_loss:
            return total / (target != self.ignore_id).sum().clamp(min=1)
        return total / target.size(0)

    def collect_feats(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """No feature statistics: Whisper normalises its log-mel features itself."""
        return {}
