"""UniverSLU as an ESPnet task: Whisper encoder-decoder with task-specifier prompts."""

import argparse
import dataclasses
import logging
import re
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.iterators.sequence_iter_factory import SequenceIterFactory
from espnet2.samplers.build_batch_sampler import build_batch_sampler
from espnet2.tasks.abs_task import AbsTask, IteratorOptions, optim_classes
from espnet2.torch_utils.initialize import initialize
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none
from typeguard import typechecked

from espnet_pruning.errors import DataError
from espnet_pruning.fileio import read_kaldi_map, read_yaml
from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.pruning.structure_file import StructureFileError, load_structure
from espnet_pruning.pruning.structured import compile_kept
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.train.hard_concrete_training import (
    HardConcreteConfError,
    TaskGates,
    optimizer_groups,
    parse_hard_concrete_conf,
)
from espnet_pruning.train.masked_training import MaskedTraining
from espnet_pruning.train.pathways_training import (
    PathwaysConfError,
    PathwaysSchedule,
    parse_pathways_conf,
)
from espnet_pruning.train.s3_router_training import (
    S3RouterConfError,
    TaskScoreRouter,
    freeze_for_routing,
    parse_s3_router_conf,
)
from espnet_pruning.train.task_schedule import (
    TaskBlockSampler,
    TaskScheduleError,
    group_batches_by_task,
)
from espnet_pruning.train.trainer import USLUTrainer
from espnet_pruning.uslu.espnet_model import ESPnetUSLUModel
from espnet_pruning.uslu.preprocessor import USLUPreprocessor
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder
from espnet_pruning.whisper.tokenizer import (
    TokenListError,
    WhisperTokenizer,
    read_token_list,
)

encoder_choices = ClassChoices(
    "encoder",
    classes=dict(whisper=WhisperEncoder),
    type_check=AbsEncoder,
    default="whisper",
)
decoder_choices = ClassChoices(
    "decoder",
    classes=dict(whisper=WhisperDecoder),
    type_check=AbsDecoder,
    default="whisper",
)
model_choices = ClassChoices(
    "model",
    classes=dict(uslu=ESPnetUSLUModel),
    type_check=AbsESPnetModel,
    default="uslu",
)


class USLUTask(AbsTask):
    """Multi-task spoken language understanding with Whisper and prompts (UniverSLU)."""

    num_optimizers: int = 1
    class_choices_list = [encoder_choices, decoder_choices, model_choices]
    trainer = USLUTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        """Add UniverSLU options (token list, task specifiers, components)."""
        group = parser.add_argument_group("Task related")
        required = parser.get_default("required")
        required += ["token_list"]
        group.add_argument(
            "--token_list",
            type=str_or_none,
            default=None,
            help="Whisper token list with added tokens (uslu_token_list writes it)",
        )
        group.add_argument(
            "--task_specifiers",
            default=None,
            help="YAML file of task specifiers extending the built-in seven tasks "
            "(stored inline in config.yaml)",
        )
        group.add_argument(
            "--init",
            type=lambda x: str_or_none(x.lower()),
            default=None,
            choices=["xavier_uniform", "xavier_normal", "normal", None],
            help="Re-initialisation of all weights (None keeps Whisper's)",
        )
        group = parser.add_argument_group("Task masks")
        group.add_argument(
            "--mask_dir",
            type=str_or_none,
            default=None,
            help="Mask set (manifest.json + bit-packed masks): every batch of task t "
            "runs on m_t ⊙ θ",
        )
        group.add_argument(
            "--update_outside_mask",
            default="allow",
            choices=["allow", "freeze"],
            help="freeze: optimizer steps leave every weight outside the active task's "
            "mask bit-identical (momentum and weight decay included)",
        )
        group.add_argument(
            "--unmasked_update",
            default="allow",
            choices=["allow", "freeze"],
            help="with --update_outside_mask freeze: whether parameters the masks do "
            "not cover (biases, LayerNorm, positional embedding) are trained",
        )
        group.add_argument(
            "--update_only",
            type=str,
            nargs="+",
            default=None,
            help="train only parameters whose name fully matches one of these regular "
            "expressions (the rest get requires_grad=False and stay bit-identical); "
            "e.g. the encoder's linear layers for the continual-learning baseline",
        )
        group.add_argument(
            "--pathways_conf",
            action=NestedDictAction,
            default=dict(),
            help="Dynamic ASR Pathways with --mask_dir as the starting masks: a batch "
            "of task z uses and trains its mask plus the weights no other task owns, "
            "and the masks adapt and shrink during training (keys: target_sparsity, "
            "adapt_interval and prune_interval in optimizer steps, prune_fraction, "
            "prune_fraction_of, granularity, block_shape, scope, residual); empty: off",
        )
        group = parser.add_argument_group("S3-Router (per-task scores, frozen weights)")
        group.add_argument(
            "--s3_router_conf",
            action=NestedDictAction,
            default=dict(),
            help="learn per-task top-k scores over frozen weights (keys: keep_ratio, "
            "modules, init, scope, seed, init_scale, pruning_scope, tasks (default: "
            "--train_tasks), train_unrouted); empty: off",
        )
        group = parser.add_argument_group("HJ-Pruning (per-task Hard-Concrete gates)")
        group.add_argument(
            "--hard_concrete_conf",
            action=NestedDictAction,
            default=dict(),
            help="learn per-task Hard-Concrete gates over attention heads and FFN units "
            "jointly with the weights, the expected sparsity held at a ramped target "
            "by an augmented Lagrangian (keys: target_sparsity, sparsity_warmup_steps "
            "in optimizer steps, head_init_drop, ffn_init_drop, variant, "
            "mac_input_seconds, mac_text_length, reg_lr, tasks (default: "
            "--train_tasks), seed); empty: off",
        )
        group = parser.add_argument_group(
            "Per-task batch schedule (--iterator_type task)"
        )
        group.add_argument(
            "--train_tasks",
            type=str,
            nargs="+",
            default=None,
            help="train (and validate) on these tasks' utterances only (iterator types "
            "task and sequence)",
        )
        group.add_argument(
            "--task_block_size",
            type=int,
            default=50,
            help="consecutive batches of one task before switching (paper: N2 = 50); "
            "0: all of the task's batches once (one epoch of the task's data)",
        )
        group.add_argument(
            "--task_rounds",
            type=int,
            default=1,
            help="rounds per epoch; a round visits every task once in a random order",
        )
        group = parser.add_argument_group("Preprocess related")
        group.add_argument(
            "--use_preprocessor",
            type=str2bool,
            default=True,
            help="Tokenise prompt and text in the data loader",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_sequence_iter_factory(
        cls, args: argparse.Namespace, iter_options: IteratorOptions, mode: str
    ) -> AbsIterFactory:
        """ESPnet's shuffled batches; with ``--train_tasks``, of those tasks only."""
        if not getattr(args, "train_tasks", None):
            return super().build_sequence_iter_factory(args, iter_options, mode)
        return cls.build_task_iter_factory(args, iter_options, mode, mixed=True)

    @classmethod
    def build_task_iter_factory(
        cls,
        args: argparse.Namespace,
        iter_options: IteratorOptions,
        mode: str,
        mixed: bool = False,
    ) -> AbsIterFactory:
        """Task-block schedule (see :mod:`espnet_pruning.train.task_schedule`).

        Training batches come from ESPnet's folded sampler (one task per batch, read
        from ``utt2category`` beside the first data file), restricted to
        ``--train_tasks``; validation iterates every batch of those tasks once. With
        ``mixed``, training batches of all those tasks are shuffled together per epoch
        (ESPnet's sequence iterator) instead of scheduled in task blocks.
        """
        utt2category = Path(iter_options.data_path_and_name_and_type[0][0]).with_name(
            "utt2category"
        )
        if not utt2category.is_file():
            raise TaskScheduleError(f"{utt2category}: needed by --iterator_type task")
        task_of = read_kaldi_map(utt2category)
        distributed = iter_options.distributed
        world_size = torch.distributed.get_world_size() if distributed else 1
        rank = torch.distributed.get_rank() if distributed else 0
        sampler = build_batch_sampler(
            type=iter_options.batch_type,
            shape_files=iter_options.shape_files,
            fold_lengths=args.fold_length,
            batch_size=iter_options.batch_size,
            batch_bins=iter_options.batch_bins,
            sort_in_batch=args.sort_in_batch,
            sort_batch=args.sort_batch,
            drop_last=args.drop_last_iter,
            min_batch_size=world_size if distributed else args.min_batch_size,
            utt2category_file=str(utt2category),
        )
        groups = group_batches_by_task(list(sampler), task_of, args.train_tasks)
        if iter_options.train and mixed:
            batches = [b[rank::world_size] for t in sorted(groups) for b in groups[t]]
            keys = {u for b in batches for u in b}
        elif iter_options.train:
            batches = TaskBlockSampler(
                groups, args.task_block_size, args.task_rounds, rank, world_size
            )
            keys = {
                u for bs in groups.values() for b in bs for u in b[rank::world_size]
            }
        else:
            batches = [b[rank::world_size] for t in sorted(groups) for b in groups[t]]
            keys = {u for b in batches for u in b}
        logging.info(
            f"[{mode}] task schedule: "
            + ", ".join(f"{t} {len(b)} batches" for t, b in groups.items())
            + (
                f"; blocks of {args.task_block_size}"
                if iter_options.train and not mixed
                else ""
            )
        )
        return SequenceIterFactory(
            dataset=cls.build_dataset(args, iter_options, keys),
            batches=batches,
            seed=args.seed,
            num_iters_per_epoch=iter_options.num_iters_per_epoch,
            shuffle=iter_options.train and mixed,
            num_workers=args.num_workers,
            collate_fn=iter_options.collate_fn,
            pin_memory=args.ngpu > 0,
        )

    @classmethod
    def task_registry(cls, args: argparse.Namespace) -> TaskRegistry:
        """The task specifiers of a run (inline dict in config.yaml, or a file path)."""
        spec = getattr(args, "task_specifiers", None)
        if isinstance(spec, dict):
            return TaskRegistry.from_dict(spec, "config task_specifiers")
        return TaskRegistry.load(spec)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        """Pad floats with 0 and ids with -1 (ESPnet's common collate function)."""
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        """Tokenise prompt and text (see :class:`USLUPreprocessor`)."""
        if not args.use_preprocessor:
            return None
        return USLUPreprocessor(
            train=train, token_list=args.token_list, tasks=cls.task_registry(args)
        )

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        """Speech always; text and prompt in training."""
        return ("speech", "text", "prompt") if not inference else ("speech",)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        """The prompt is optional at inference (decode configs carry it)."""
        return ("prompt",) if inference else ()

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        """Check the data against tasks and token list, then ESPnet's main worker."""
        if getattr(args, "use_preprocessor", True) and not args.dry_run:
            cls.check_data(args)
        super().main_worker(args)

    @classmethod
    def check_data(cls, args: argparse.Namespace) -> None:
        """Fail before training when a prompt or label of the data is unknown.

        Every ``prompt`` file must name known tasks and agree with the
        ``utt2category`` beside it (:meth:`TaskRegistry.tasks_of_prompts`), and every
        label/entity tag of the ``text`` files must be in the token list; errors name
        the file and line.
        """
        tasks = cls.task_registry(args)
        token_list = args.token_list
        # A plain read: build_model validates the list against Whisper's vocabulary.
        tokens = set(
            read_token_list(token_list) if isinstance(token_list, str) else token_list
        )
        for triples in (
            args.train_data_path_and_name_and_type,
            args.valid_data_path_and_name_and_type,
        ):
            files = {name: path for path, name, _ in (triples or [])}
            if "prompt" not in files:
                continue
            task_of = tasks.tasks_of_prompts(
                files["prompt"], Path(files["prompt"]).with_name("utt2category")
            )
            if "text" not in files:
                continue
            for n, (uid, text) in enumerate(read_kaldi_map(files["text"]).items(), 1):
                if uid not in task_of:
                    raise DataError(
                        f"{files['text']}:{n}: utterance {uid} has no prompt"
                    )
                for token in tasks[task_of[uid]].special_tokens_of(text):
                    if token not in tokens:
                        raise DataError(
                            f"{files['text']}:{n}: utterance {uid}: label/tag {token!r} "
                            f"is not in the token list {args.token_list if isinstance(args.token_list, str) else ''}"
                        )

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetUSLUModel:
        """Build encoder, decoder and model from the config.

        Raises:
            TokenListError: The token list does not fit Whisper or the tasks.
            WhisperCheckpointError: Whisper checkpoint missing or not matching the dims.
            SpecifierError: Invalid task specifiers.
        """
        source = "token_list"
        if isinstance(args.token_list, str):
            source = args.token_list
            tokenizer = WhisperTokenizer(args.token_list)
            # Keep the config portable, as ESPnet's ASRTask does.
            args.token_list = list(tokenizer.token_list)
        else:
            tokenizer = WhisperTokenizer(list(args.token_list))
        tasks = cls.task_registry(args)
        args.task_specifiers = tasks.to_dict()

        task_prompts = {}
        for task in tasks:
            missing = [t for t in task.prompt if t not in tokenizer.token2id]
            if missing:
                raise TokenListError(
                    f"{source}: lacks prompt token(s) {missing} of task {task.name}"
                )
            task_prompts[task.name] = tokenizer.tokens2ids(task.prompt)
        vocab_size = len(tokenizer.token_list)
        logging.info(f"Vocabulary size: {vocab_size}; tasks: {', '.join(tasks.names)}")

        encoder_class = encoder_choices.get_class(args.encoder)
        encoder = encoder_class(**args.encoder_conf)
        decoder_class = decoder_choices.get_class(args.decoder)
        decoder = decoder_class(
            vocab_size=vocab_size,
            encoder_output_size=encoder.output_size(),
            **args.decoder_conf,
        )
        model_class = model_choices.get_class(getattr(args, "model", "uslu"))
        model = model_class(
            vocab_size=vocab_size,
            token_list=tokenizer.token_list,
            encoder=encoder,
            decoder=decoder,
            task_prompts=task_prompts,
            **args.model_conf,
        )
        if args.init is not None:
            initialize(model, args.init)
        if getattr(args, "pathways_conf", None) and not getattr(args, "mask_dir", None):
            raise PathwaysConfError(
                "--pathways_conf needs --mask_dir (the start masks)"
            )
        if getattr(args, "mask_dir", None):
            model.masked_training = cls.build_masked_training(args, model)
        if getattr(args, "update_only", None):
            cls.restrict_trainable(model, args.update_only)
        if getattr(args, "s3_router_conf", None):
            cls.attach_score_router(args, model)
        if getattr(args, "hard_concrete_conf", None):
            cls.attach_task_gates(args, model)
        return model

    @classmethod
    def attach_task_gates(
        cls, args: argparse.Namespace, model: ESPnetUSLUModel
    ) -> TaskGates:
        """Give the model ``--hard_concrete_conf``'s per-task gates.

        The resolved task list is written back into ``args.hard_concrete_conf`` (and
        so into ``config.yaml``), so a model built from the config has the same gates
        whatever its ``--train_tasks``.

        Raises:
            HardConcreteConfError: A bad conf, unknown tasks, or an exclusive option
                set (``--mask_dir``, ``--s3_router_conf``, ``--parp_conf``,
                ``--pathways_conf``).
        """
        conf = parse_hard_concrete_conf(args.hard_concrete_conf)
        tasks = cls._per_task_method_tasks(
            args,
            model,
            "hard_concrete_conf",
            conf.tasks,
            ("mask_dir", "s3_router_conf", "parp_conf", "pathways_conf"),
            HardConcreteConfError,
        )
        train_tasks = getattr(args, "train_tasks", None)
        gates = TaskGates(
            model, dataclasses.replace(conf, tasks=tuple(tasks)), train_tasks
        )
        model.attach_task_gates(gates)
        cls._one_task_per_batch(args, len(gates.train_tasks), "HJ-Pruning")
        return gates

    @staticmethod
    def _per_task_method_tasks(
        args: argparse.Namespace,
        model: ESPnetUSLUModel,
        option: str,
        conf_tasks: Sequence[str],
        exclusive: Sequence[str],
        error: type,
    ) -> List[str]:
        """The tasks a per-task method's ``--<option>`` covers (its ``tasks``, else
        ``--train_tasks``, else all), written back into the conf (and config.yaml).

        Raises:
            ``error``: An exclusive option is set, or unknown tasks.
        """
        for other in exclusive:
            if getattr(args, other, None):
                raise error(f"--{option} and --{other} exclude each other")
        train_tasks = getattr(args, "train_tasks", None)
        tasks = list(conf_tasks or train_tasks or model.task_names)
        unknown = sorted(set(tasks) - set(model.task_names))
        if unknown:
            raise error(
                f"{option}: tasks {unknown} are not tasks of the model "
                f"({', '.join(model.task_names)})"
            )
        setattr(args, option, {**getattr(args, option), "tasks": tasks})
        return tasks

    @staticmethod
    def _one_task_per_batch(args: argparse.Namespace, n_trained: int, what: str):
        """With several trained tasks, a batch of one task leaves the others' own
        parameters without gradient: DDP must allow unused parameters."""
        if n_trained > 1 and not getattr(args, "unused_parameters", True):
            args.unused_parameters = True
            logging.info(f"{what}: --unused_parameters true (one task per batch)")

    @classmethod
    def attach_score_router(
        cls, args: argparse.Namespace, model: ESPnetUSLUModel
    ) -> TaskScoreRouter:
        """Give the model ``--s3_router_conf``'s score router and freeze its weights.

        The resolved task list is written back into ``args.s3_router_conf`` (and so
        into ``config.yaml``), so a model built from the config has the same scores
        whatever its ``--train_tasks``. The scores get their initial values at the
        first forward pass (:mod:`espnet_pruning.train.s3_router_training`).

        Raises:
            S3RouterConfError: A bad conf, unknown tasks, or an exclusive option set
                (``--mask_dir``, ``--update_only``, ``--parp_conf``).
        """
        conf = parse_s3_router_conf(args.s3_router_conf)
        tasks = cls._per_task_method_tasks(
            args,
            model,
            "s3_router_conf",
            conf.tasks,
            ("mask_dir", "update_only", "parp_conf", "pathways_conf"),
            S3RouterConfError,
        )
        train_tasks = getattr(args, "train_tasks", None)
        router = TaskScoreRouter(conf.hparams, conf.pruning_scope, conf.train_unrouted)
        try:
            for task in tasks:
                router.add_task(task, model)
        except ValueError as e:
            raise S3RouterConfError(f"s3_router_conf: {e}") from None
        model.attach_score_router(router)
        trained = list(train_tasks or tasks)
        freeze_for_routing(model, router, trained)
        cls._one_task_per_batch(args, len(trained), "S3-Router")
        return router

    @classmethod
    def build_masked_training(
        cls, args: argparse.Namespace, model: ESPnetUSLUModel
    ) -> MaskedTraining:
        """The run's masked training: ``--mask_dir`` masks, ``--train_tasks`` and the
        update policies, checked against the model.

        Raises:
            MaskError: The masks do not fit the model.
            MaskedTrainingError: A train task without a mask, or unknown tasks.
        """
        masks = load_masks(args.mask_dir)
        schedule = None
        if getattr(args, "pathways_conf", None):
            schedule = PathwaysSchedule(masks, parse_pathways_conf(args.pathways_conf))
            masks = schedule.training_mask_set()
        training = MaskedTraining(
            masks,
            train_tasks=getattr(args, "train_tasks", None),
            update_outside_mask=getattr(args, "update_outside_mask", "allow"),
            unmasked_update=getattr(args, "unmasked_update", "allow"),
        )
        training.check_model(model, model.task_names)
        if schedule is not None:
            training.set_schedule(schedule)
        logging.info(
            f"Task masks from {args.mask_dir}: {', '.join(training.masks.tasks)}; "
            f"updates outside the active mask: {training.update_outside_mask}; "
            f"parameters without masks: {training.unmasked_update}"
            + ("; Dynamic ASR Pathways" if schedule is not None else "")
        )
        return training

    @classmethod
    @typechecked
    def build_model_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
        structure_file: Optional[Union[Path, str]] = None,
    ) -> Tuple[ESPnetUSLUModel, argparse.Namespace]:
        """A trained model from its ``config.yaml`` and checkpoint, as ESPnet's
        :meth:`AbsTask.build_model_from_file` builds it, with two differences.

        The config is parsed by libyaml (:func:`~espnet_pruning.fileio.read_yaml`): its
        token list makes the pure-Python parser cost 2 s per model, and a decoding job
        may build dozens. The checkpoint must fit the model key for key (ESPnet loads
        with ``strict=False``, which would keep a random weight for a missing key).

        Args:
            config_file: The training run's ``config.yaml`` (default: beside
                ``model_file``).
            model_file: A checkpoint of the run; None keeps the initial weights.
            device: ``cpu``, ``cuda`` or ``cuda:N``.
            structure_file: For a compiled (structured-pruned) model: its kept heads
                and FFN units (:mod:`espnet_pruning.pruning.structure_file`); the
                config's model is compiled to those shapes before the strict load.

        Raises:
            StructureFileError: A structure file that is bad or does not fit.
        """
        if config_file is None:
            if model_file is None:
                raise ValueError("build_model_from_file: config_file or model_file")
            config_file = Path(model_file).parent / "config.yaml"
        logging.info(f"config file: {config_file}")
        args = argparse.Namespace(**read_yaml(config_file))
        init = getattr(args, "init", None)
        if model_file is not None:
            args.init = None  # the checkpoint overwrites every weight (strict load)
        model = cls.build_model(args).to(device)
        args.init = init
        if structure_file is not None:
            _, kept = load_structure(structure_file)
            try:
                model = compile_kept(model, kept)
            except ValueError as e:
                raise StructureFileError(f"{structure_file}: {e}") from None
        if model_file is not None:
            if device == "cuda":
                # torch.load's "cuda" is cuda:0; the model went to the current device.
                device = f"cuda:{torch.cuda.current_device()}"
            state = torch.load(model_file, map_location=device, weights_only=True)
            model.load_state_dict(state)
        return model, args

    @classmethod
    @typechecked
    def build_unmasked_model(
        cls, config_file: Path
    ) -> Tuple[ESPnetUSLUModel, argparse.Namespace]:
        """The model a training config builds, without its ``--mask_dir`` masks (and
        without ``--s3_router_conf``'s scores).

        For checking a mask set against the model (names, shapes, parameter count):
        the config's own masks may be the ones under test. The weights are the
        freshly built ones.

        Raises:
            DataError: If the config file does not exist or is not a mapping.
        """
        if not config_file.is_file():
            raise DataError(f"{config_file}: training config not found")
        conf = read_yaml(config_file)
        if not isinstance(conf, dict):
            raise DataError(f"{config_file}: not a training config (a YAML mapping)")
        args = argparse.Namespace(
            **dict(
                conf,
                mask_dir=None,
                update_only=None,
                s3_router_conf=None,
                pathways_conf=None,
                hard_concrete_conf=None,
            )
        )
        return cls.build_model(args), args

    @staticmethod
    @typechecked
    def restrict_trainable(model: torch.nn.Module, patterns: List[str]) -> None:
        """Freeze (``requires_grad=False``) every parameter not matching ``patterns``.

        Raises:
            DataError: For an invalid expression or one that matches nothing.
        """
        try:
            regexes = [re.compile(p) for p in patterns]
        except re.error as e:
            raise DataError(f"--update_only: invalid regular expression: {e}") from e
        names = [n for n, _ in model.named_parameters()]
        for rx in regexes:
            if not any(rx.fullmatch(n) for n in names):
                raise DataError(
                    f"--update_only {rx.pattern!r} matches no parameter (e.g. "
                    f"{', '.join(names[:3])})"
                )
        n_train = 0
        for name, p in model.named_parameters():
            train = any(rx.fullmatch(name) for rx in regexes)
            p.requires_grad_(train)
            n_train += p.numel() if train else 0
        total = sum(p.numel() for p in model.parameters())
        logging.info(
            f"--update_only: {n_train} of {total} parameters trainable "
            f"({100 * n_train / total:.2f} %)"
        )

    @classmethod
    def _build_gate_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module):
        """ESPnet's optimizer (``--optim``, ``--optim_conf``) over two parameter groups:
        the weights, and the gates' ``log α`` and multipliers at ``reg_lr`` without
        weight decay; ``log α`` is clamped after every step."""
        optim_class = optim_classes.get(args.optim)
        if optim_class is None:
            raise ValueError(f"must be one of {list(optim_classes)}: {args.optim}")
        gates = model.task_gates
        groups = optimizer_groups(model, gates, args.optim_conf)
        optimizer = optim_class(groups, **args.optim_conf)
        optimizer.register_step_post_hook(lambda *_: gates.after_step())
        return [optimizer]

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module):
        """ESPnet's optimizers, bound to the model's masked training (if any)."""
        if getattr(model, "task_gates", None) is not None:
            optimizers = cls._build_gate_optimizers(args, model)
        else:
            optimizers = super().build_optimizers(args, model)
        if model.masked_training is not None:
            model.masked_training.bind_optimizers(model, optimizers)
        return optimizers
