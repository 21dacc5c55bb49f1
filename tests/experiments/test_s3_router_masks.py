"""S3-Router as a mask finder through ESPnet's Trainer on a tiny model: exact top-k
counts, θ bit-identical, a resumed run equal to an uninterrupted one, continual learning
without forgetting, and bad options refused.
"""

import json
from dataclasses import asdict

import pytest
import torch
from tiny import driver_train_args, task_run_config

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.mask_methods import s3_router_hparams
from espnet_pruning.experiments.runs import TrainArgsError, run_training
from espnet_pruning.experiments.s3_router_masks import find_s3_router_masks
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.s3_router import (
    S3RouterHparams,
    init_scores,
    num_kept,
    score_generator,
    topk_masks,
)
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.train.s3_router_training import S3RouterConfError, scores_from_state
from espnet_pruning.whisper.tokenizer import WhisperTokenizer

TASKS = ["asr_librispeech", "er_iemocap"]


def config(path, epochs, nbest=1):
    return task_run_config(path, epochs, keep_nbest_models=nbest)


def theta(state):
    return {k: v for k, v in state.items() if not k.startswith("score_router.")}


@pytest.fixture(scope="module")
def setup(tiny_data, tiny_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    scope = PruningScope(include_token_embedding=False)
    save_masks(MaskSet.from_model(model, scope, TASKS), root / "round0")
    theta0 = tiny_trained / "valid.loss.best.pth"
    args = driver_train_args(tiny_data, config(root / "s3.yaml", 2, nbest=2))
    hp = S3RouterHparams(keep_ratio=0.64, modules="ffn", init="ori")
    out = find_s3_router_masks(theta0, root / "round0", root / "s3", args, hp)
    conf = {**asdict(hp), "pruning_scope": scope.to_dict(), "tasks": TASKS}
    return dict(root=root, theta0=theta0, args=args, hp=hp, out=out, conf=conf)


def test_masks_are_the_top_k_of_the_final_scores_the_rest_dense(setup):
    masks = load_masks(setup["out"])
    final = torch.load(setup["root"] / "s3" / "run" / "2epoch.pth", weights_only=True)
    theta0 = torch.load(setup["theta0"], weights_only=True)
    ffn = sorted(n for n in masks.names if ".mlp." in n)
    assert len(ffn) == 8  # 2 FFN Linear weights × 2 layers × encoder and decoder
    for task in TASKS:
        scores = scores_from_state(final, task)
        assert list(scores) == ffn
        top = topk_masks(scores, 0.64)
        got = masks.mask(task)
        for name in masks.names:
            if name in scores:
                n = got[name].numel()
                assert int(got[name].sum()) == num_kept(n, 0.64) == round(0.64 * n)
                assert torch.equal(got[name], top[name])
            else:
                assert bool(got[name].all())
        # Every score tensor moved away from its ORI start, and some masks with it.
        start = {n: init_scores(theta0[n], "ori", score_generator(0, n)) for n in ffn}
        assert all(not torch.equal(scores[n], start[n]) for n in ffn)
        init_masks = topk_masks(start, 0.64)
        assert any(not torch.equal(got[n], init_masks[n]) for n in ffn)
    a, b = (masks.mask(t) for t in TASKS)
    assert any(not torch.equal(a[n], b[n]) for n in ffn)
    report = json.loads((setup["root"] / "s3" / "report.json").read_text())
    assert report["tasks"]["er_iemocap"]["n_kept"] == masks.kept("er_iemocap")
    assert json.loads((setup["root"] / "s3" / "s3_router.json").read_text()) == {
        "keep_ratio": 0.64,
        "modules": "ffn",
        "init": "ori",
        "scope": "per_tensor",
        "seed": 0,
        "init_scale": 1.0,
    }


def test_theta_is_bit_identical_in_every_checkpoint(setup):
    """Only scores train; the average of the two epochs (a real file with
    keep_nbest_models 2) averages the scores and keeps θ exact."""
    theta0 = torch.load(setup["theta0"], weights_only=True)
    run = setup["root"] / "s3" / "run"
    average = run / "valid.loss.ave_2best.pth"
    assert average.is_file() and not average.is_symlink()
    states = {f: torch.load(run / f, weights_only=True) for f in run.glob("*.pth")}
    assert len(states) >= 3
    for f, state in states.items():
        state = theta(state)
        assert list(state) == list(theta0), f
        assert all(torch.equal(state[k], theta0[k]) for k in theta0), f
    ave, last = states[average], states[run / "2epoch.pth"]
    key = next(k for k in ave if k.startswith("score_router.task_scores."))
    assert not torch.equal(ave[key], last[key])
    first = states[run / "1epoch.pth"]
    assert torch.allclose(ave[key], (first[key] + last[key]) / 2)
    assert int(ave["score_router.initialised.er_iemocap"]) == 1


def test_a_resumed_run_equals_the_uninterrupted_one(setup, tiny_data, tmp_path):
    """One epoch, then the same directory continued to two: the scores (and their
    initialisation flags) come back from checkpoint 1, so nothing is re-initialised."""
    args = [
        "--init_param",
        str(setup["theta0"]),
        "--train_tasks",
        *TASKS,
        "--s3_router_conf",
        json.dumps(setup["conf"]),
    ]
    one = config(tmp_path / "one.yaml", 1)
    run_training(
        [*driver_train_args(tiny_data, one), *args],
        tmp_path / "run",
        keep_checkpoint=True,
    )
    (tmp_path / "run" / ".done").unlink()
    run_training([*setup["args"], *args], tmp_path / "run")
    got = torch.load(tmp_path / "run" / "2epoch.pth", weights_only=True)
    ref = torch.load(setup["root"] / "s3" / "run" / "2epoch.pth", weights_only=True)
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def _batch(task, token_list):
    p = WhisperTokenizer(str(token_list)).tokens2ids(TaskRegistry.load()[task].prompt)
    g = torch.Generator().manual_seed(1)
    return dict(
        speech=torch.randn(2, 8000, generator=g),
        speech_lengths=torch.tensor([8000, 6000]),
        text=torch.tensor([p + [50363, 318], p + [50363, -1]]),
        text_lengths=torch.tensor([5, 4]),
        prompt=torch.tensor([p, p]),
        prompt_lengths=torch.tensor([3, 3]),
    )


def test_continual_learning_leaves_the_other_tasks_bit_identical(
    setup, tiny_data, tmp_path
):
    """A new task (ic_fsc) learns its scores on top of the finished run: the old tasks'
    scores, θ and the old tasks' outputs are unchanged bit for bit."""
    old_run = setup["root"] / "s3" / "run"
    conf = {**setup["conf"], "tasks": [*TASKS, "ic_fsc"]}
    args = [
        "--init_param",
        str(old_run / "2epoch.pth"),
        "--train_tasks",
        "ic_fsc",
        "--s3_router_conf",
        json.dumps(conf),
    ]
    one = config(tmp_path / "one.yaml", 1)
    run_training([*driver_train_args(tiny_data, one), *args], tmp_path / "cl")
    before = torch.load(old_run / "2epoch.pth", weights_only=True)
    after = torch.load(tmp_path / "cl" / "1epoch.pth", weights_only=True)
    for key, value in before.items():  # θ, old scores and their flags
        assert torch.equal(after[key], value), key
    new = scores_from_state(after, "ic_fsc")
    theta0 = torch.load(setup["theta0"], weights_only=True)
    assert all(
        not torch.equal(s, init_scores(theta0[n], "ori", score_generator(0, n)))
        for n, s in new.items()
    )
    old_model, _ = USLUTask.build_model_from_file(None, old_run / "2epoch.pth")
    new_model, _ = USLUTask.build_model_from_file(None, tmp_path / "cl" / "1epoch.pth")
    old_model.eval()
    new_model.eval()
    tokens = tiny_data / "tokens.txt"
    with torch.no_grad():
        for task in TASKS:
            a, sa, _ = old_model(**_batch(task, tokens))
            b, sb, _ = new_model(**_batch(task, tokens))
            assert torch.equal(a, b) and torch.equal(sa["acc"], sb["acc"])


def test_a_finished_search_is_skipped_and_bad_options_refused(
    setup, tiny_data, tmp_path, caplog
):
    caplog.set_level("INFO")
    before = (setup["out"] / "manifest.json").stat().st_mtime_ns
    again = find_s3_router_masks(
        setup["theta0"],
        setup["root"] / "round0",
        setup["root"] / "s3",
        setup["args"],
        setup["hp"],
    )
    assert again == setup["out"]
    assert (setup["out"] / "manifest.json").stat().st_mtime_ns == before
    assert "S3-Router done" in caplog.text
    for option in ("--s3_router_conf", "--update_only"):
        with pytest.raises(TrainArgsError, match=option):
            find_s3_router_masks(
                setup["theta0"],
                setup["root"] / "round0",
                tmp_path / "other",
                [*setup["args"], option, "x"],
                setup["hp"],
            )
    with pytest.raises(InputError, match="without --tasks"):
        find_s3_router_masks(
            setup["theta0"],
            setup["root"] / "round0",
            tmp_path / "other",
            setup["args"],
            setup["hp"],
            only_tasks=["er_iemocap"],
        )
    # A bad key of --s3_router_conf: one error naming it, before any training.
    bad = json.dumps({**setup["conf"], "keep_ration": 0.5})
    with pytest.raises(S3RouterConfError, match=r"unknown key\(s\) \['keep_ration'\]"):
        run_training([*setup["args"], "--s3_router_conf", bad], tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoint.pth").exists()
    bad = json.dumps({**setup["conf"], "tasks": ["nope"]})
    with pytest.raises(S3RouterConfError, match=r"tasks \['nope'\] are not tasks"):
        run_training([*setup["args"], "--s3_router_conf", bad], tmp_path / "bad2")


def test_s3_router_options_come_from_the_level_and_the_method_config():
    hp = s3_router_hparams("s3_router", 0.2, 2, {})
    assert (hp.keep_ratio, hp.modules, hp.init, hp.scope) == (
        0.64,
        "ffn",
        "ori",
        "per_tensor",
    )
    hp = s3_router_hparams("s3_router_p", 0.2, 5, {"scope": "global"})
    assert (hp.keep_ratio, hp.modules, hp.init, hp.scope) == (
        0.32768,
        "both",
        "wmi",
        "global",
    )
    with pytest.raises(InputError, match=r"key\(s\) \['keep_ratio'\] not allowed"):
        s3_router_hparams("s3_router", 0.2, 2, {"keep_ratio": 0.5})
    with pytest.raises(InputError, match="s3_router config: init must be one of"):
        s3_router_hparams("s3_router", 0.2, 2, {"init": "magic"})
