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
from espnet_pruning.train.hard_concrete_training import TaskGates
from espnet_pruning.train.masked_training import MaskedTraining
from espnet_pruning.train.s3_router_training import TaskScoreRouter
from espnet_pruning.whisper.tokenizer import EOT, SOT


class TaskRoutingError(InputError):
    """A batch's prompts do not identify one known task where one is needed."""


class ESPnetUSLUModel(AbsESPnetModel):
    """Whisper encoder-decoder whose targets start with the task prompt.

    Each utterance's task is read from its prompt ids (``prompt`` in the batch). The model
    keeps the prompt → task table as a plain attribute (not a buffer), so checkpoints hold
    only the Whisper weights under ESPnet's names (plus ``score_router.*`` with S3-Router,
    see :meth:`attach_score_router`, or ``task_gates.*`` with HJ-Pruning, see
    :meth:`attach_task_gates`).

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
        self.masked_training = None
        self.score_router: Optional[TaskScoreRouter] = None
        self.task_gates: Optional[TaskGates] = None

    def attach_score_router(self, router: TaskScoreRouter) -> None:
        """Route every batch through ``router`` (S3-Router, docs/methods.md §5).

        The router becomes the submodule ``score_router`` (its scores are parameters of
        the model: the optimizer trains them, checkpoints carry them). Each batch of task
        ``t`` runs encoder and decoder on ``TopK(|S_t|) ⊙ θ``
        (:mod:`espnet_pruning.train.s3_router_training`).

        Raises:
            ValueError: If masked training is set, or a routed weight is outside the
                encoder and decoder.
        """
        if self.masked_training is not None:
            raise ValueError("S3-Router and masked training exclude each other")
        outside = [
            n
            for t in router.tasks
            for n in router.routed_names(t)
            if not n.startswith(("encoder.", "decoder."))
        ]
        if outside:
            raise ValueError(f"routed weights outside encoder/decoder: {outside[:3]}")
        self.score_router = router

    def attach_task_gates(self, gates: TaskGates) -> None:
        """Gate every batch's heads and FFN units with its task's Hard-Concrete gates
        (HJ-Pruning, docs/methods.md §2).

        The gates become the submodule ``task_gates`` (their ``log α``, multipliers and
        step counter are parameters and buffers of the model); a training batch's loss
        gains its task's Lagrangian term
        (:mod:`espnet_pruning.train.hard_concrete_training`).

        Raises:
            ValueError: If masked training or S3-Router is set.
        """
        if self.masked_training is not None or self.score_router is not None:
            raise ValueError("Hard-Concrete gates exclude masks and S3-Router")
        self.task_gates = gates

    @property
    def masked_training(self) -> Optional[MaskedTraining]:
        """Training under per-task masks (set by the task; None: dense).

        Masks live outside the state dict and outside DDP's buffers. Replacing it
        writes back the weight values the previous one set aside.
        """
        return self.__dict__["_masked_training"]

    @masked_training.setter
    def masked_training(self, value: Optional[MaskedTraining]) -> None:
        old = self.__dict__.get("_masked_training")
        if old is not None and old is not value:
            old.restore()
        self.__dict__["_masked_training"] = value

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

    def task_of_batch(self, **kwargs) -> str:
        """The one task of a task-homogeneous batch (masked training needs one).

        Raises:
            TaskRoutingError: No prompt in the batch, an unknown prompt, or a batch
                mixing tasks.
        """
        if "prompt" not in kwargs:
            raise TaskRoutingError("a masked model needs each batch's prompt")
        tasks = set(self.tasks_of_batch(kwargs["prompt"], kwargs["prompt_lengths"]))
        if len(tasks) != 1:
            raise TaskRoutingError(
                f"batch mixes tasks {sorted(tasks)}; masked training needs task-"
                "homogeneous batches (batch_type folded with utt2category, or "
                "--iterator_type task)"
            )
        return tasks.pop()

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
        if self.masked_training is not None:
            self.masked_training.use_masks(self, self.task_of_batch(**kwargs))
        gate_task = None
        if self.task_gates is not None:
            gate_task = self.task_of_batch(**kwargs)
            self.task_gates.use(self, gate_task)
        routed = None
        if self.score_router is not None:
            task = self.task_of_batch(**kwargs)
            self.score_router.ensure_initialised(self)
            routed = self.score_router.effective_parameters(self, task)
        batch_size = speech.shape[0]
        text = text[:, : text_lengths.max()]
        text = torch.where(text == -1, torch.full_like(text, self.ignore_id), text)

        encoder_out, encoder_out_lens, _ = self._call(
            "encoder", routed, speech, speech_lengths
        )
        ys_in_pad, ys_out_pad = add_sos_eos(text, self.sos, self.eos, self.ignore_id)
        decoder_out, _ = self._call(
            "decoder",
            routed,
            encoder_out,
            encoder_out_lens,
            ys_in_pad,
            text_lengths + 1,
        )
        loss = self.attention_loss(decoder_out, ys_out_pad)
        acc = th_accuracy(
            decoder_out.view(-1, self.vocab_size),
            ys_out_pad,
            ignore_label=self.ignore_id,
        )
        stats = dict(loss=loss.detach(), acc=acc)
        if gate_task is not None:
            term, gate_stats = self.task_gates.penalty(gate_task)
            stats.update(gate_stats)
            if self.training:
                loss = loss + term.to(loss.dtype)
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def _call(
        self, name: str, routed: Optional[Dict[str, torch.Tensor]], *args
    ) -> Tuple[torch.Tensor, ...]:
        """Submodule ``name`` on ``args``, with the routed weights substituted (if any).

        ``routed`` maps model parameter names to effective weights; those under
        ``name.`` replace the submodule's parameters for this call only
        (``torch.func.functional_call``), so θ itself is never written.
        """
        module = getattr(self, name)
        if not routed:
            return module(*args)
        head = name + "."
        params = {k[len(head) :]: v for k, v in routed.items() if k.startswith(head)}
        return torch.func.functional_call(module, params, args, strict=False)

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
