"""The UniverSLU model: Whisper encoder-decoder trained on prompted multi-task targets."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import th_accuracy
from espnet2.legacy.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet2.legacy.nets.pytorch_backend.transformer.label_smoothing_loss import (
    LabelSmoothingLoss,
)
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet_pruning.whisper.tokenizer import EOT, SOT


class TaskRoutingError(ValueError):
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
        self.criterion_att = LabelSmoothingLoss(
            size=vocab_size,
            padding_idx=ignore_id,
            smoothing=lsm_weight,
            normalize_length=length_normalized_loss,
        )
        self.task_names = list(task_prompts)
        self.prompt_to_task = {tuple(ids): name for name, ids in task_prompts.items()}

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
        batch_size = speech.shape[0]
        text = text[:, : text_lengths.max()]
        text = torch.where(text == -1, torch.full_like(text, self.ignore_id), text)

        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths)
        ys_in_pad, ys_out_pad = add_sos_eos(text, self.sos, self.eos, self.ignore_id)
        decoder_out, _ = self.decoder(
            encoder_out, encoder_out_lens, ys_in_pad, text_lengths + 1
        )
        loss = self.criterion_att(decoder_out, ys_out_pad)
        acc = th_accuracy(
            decoder_out.view(-1, self.vocab_size),
            ys_out_pad,
            ignore_label=self.ignore_id,
        )
        stats = dict(loss=loss.detach(), acc=acc)
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

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
