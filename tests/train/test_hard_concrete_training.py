"""HJ-Pruning in training: per-task gates on a tiny Whisper (exact values), and through
ESPnet's Trainer (the Lagrangian ascends, the ramp follows the steps, resume is exact,
untrained tasks' gates stay bit-identical)."""

import json

import pytest
import torch
from tiny import driver_train_args, task_run_config
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.experiments.runs import run_training
from espnet_pruning.pruning.hard_concrete import HardConcreteHparams
from espnet_pruning.train.hard_concrete_training import (
    HardConcreteConf,
    HardConcreteConfError,
    TaskGates,
    hard_concrete_state,
    optimizer_groups,
    parse_hard_concrete_conf,
)

TASKS = ["asr_librispeech", "er_iemocap"]


def tiny_whisper() -> Whisper:
    torch.manual_seed(0)
    model = Whisper(ModelDimensions(80, 8, 16, 2, 2, 40, 6, 16, 2, 2))
    with torch.no_grad():  # Whisper leaves it uninitialised (torch.empty)
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    return model


def conf(**hp) -> HardConcreteConf:
    return HardConcreteConf(HardConcreteHparams(**hp), ("a", "b"), 0)


def forward(model):
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(1, 80, 16, generator=g)
    return model(mel, torch.tensor([[1, 2, 3]]))


def test_each_task_gates_the_model_with_its_own_gates_and_release_restores_it():
    model = tiny_whisper()
    gates = TaskGates(model, conf())
    model.eval()
    dense = forward(model)
    gates.use(model, "a")
    a = forward(model)
    gates.use(model, "b")
    b = forward(model)
    gates.release()
    assert torch.equal(forward(model), dense)
    assert not torch.equal(a, dense) and not torch.equal(a, b)
    # Seeds differ by task index: the two gate sets start apart.
    la = gates.gate_set("a").gates["encoder/blocks/0/mlp"].log_alpha
    lb = gates.gate_set("b").gates["encoder/blocks/0/mlp"].log_alpha
    assert not torch.equal(la, lb)


def test_the_penalty_descends_in_log_alpha_and_ascends_in_lambda():
    model = tiny_whisper()
    gates = TaskGates(model, conf(target_sparsity=0.6, sparsity_warmup_steps=4))
    lag = gates.lagrangians["a"]
    with torch.no_grad():
        lag.lambda_1.fill_(0.5)
        lag.lambda_2.fill_(0.25)
    gates.steps.fill_(2)  # half-way up the ramp: t = 0.3
    term, stats = gates.penalty("a")
    s = stats["expected_sparsity"].item()
    assert stats["target_sparsity"].item() == pytest.approx(0.3)
    assert term.item() == pytest.approx(0.5 * (s - 0.3) + 0.25 * (s - 0.3) ** 2)
    term.backward()
    # flip_grad: the gradient reaching λ is negated, so descent ascends.
    assert lag.lambda_1.grad.item() == pytest.approx(-(s - 0.3))
    assert lag.lambda_2.grad.item() == pytest.approx(-((s - 0.3) ** 2))
    grads = [g.log_alpha.grad for g in gates.gate_set("a").gates.values()]
    assert all(x is not None and bool(x.abs().sum() > 0) for x in grads)
    assert all(g.log_alpha.grad is None for g in gates.gate_set("b").gates.values())


def test_steps_clamp_log_alpha_and_advance_the_ramp():
    model = tiny_whisper()
    gates = TaskGates(model, conf(target_sparsity=0.4, sparsity_warmup_steps=2))
    groups = optimizer_groups(model, gates, {"lr": 0.1})
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=0.01)
    opt.register_step_post_hook(lambda *_: gates.after_step())
    assert groups[1]["lr"] == 0.02 and groups[1]["weight_decay"] == 0.0
    ids = {id(p) for p in groups[1]["params"]}
    assert not ids & {id(p) for p in groups[0]["params"]}
    # Here the gates are not a submodule of the model (in an ESPnet run they are).
    assert len(groups[0]["params"]) == len(list(model.parameters()))
    # Per task: 4 encoder and 6 decoder gate vectors; two multipliers.
    assert len(ids) == len(list(gates.parameters())) == 2 * (4 + 6 + 2)
    la = gates.gate_set("a").gates["decoder/blocks/1/mlp"].log_alpha
    with torch.no_grad():
        la.fill_(50.0)
    assert gates.target() == 0.0
    opt.step()
    assert int(gates.steps) == 1 and gates.target() == pytest.approx(0.2)
    assert torch.allclose(la, torch.full_like(la, torch.log(torch.tensor(100.0))))
    opt.step()
    assert gates.target() == pytest.approx(0.4)


def test_only_train_tasks_have_trainable_gates_and_bad_confs_are_named():
    model = tiny_whisper()
    gates = TaskGates(model, conf(), train_tasks=["b"])
    assert not any(p.requires_grad for p in gates.gate_set("a").parameters())
    assert all(p.requires_grad for p in gates.gate_set("b").parameters())
    assert not gates.lagrangians["a"].lambda_1.requires_grad
    with pytest.raises(HardConcreteConfError, match=r"train task\(s\) \['c'\]"):
        TaskGates(model, conf(), train_tasks=["c"])
    with pytest.raises(HardConcreteConfError, match="has no gates"):
        gates.gate_set("c")
    parsed = parse_hard_concrete_conf({"target_sparsity": 0.3, "tasks": ["a"]})
    assert parsed.hparams.target_sparsity == 0.3 and parsed.tasks == ("a",)
    with pytest.raises(HardConcreteConfError, match=r"unknown key\(s\) \['sparsity'\]"):
        parse_hard_concrete_conf({"sparsity": 0.3})
    with pytest.raises(HardConcreteConfError, match="target_sparsity must be in"):
        parse_hard_concrete_conf({"target_sparsity": 1.5})
    with pytest.raises(HardConcreteConfError, match="tasks must be a list"):
        parse_hard_concrete_conf({"tasks": "a"})


# --------------------------------------------------------------------- ESPnet runs
HC = {"target_sparsity": 0.3, "reg_lr": 0.05, "sparsity_warmup_steps": 4}


def _args(theta0, conf_, train_tasks=TASKS):
    return [
        "--init_param",
        str(theta0),
        "--train_tasks",
        *train_tasks,
        "--hard_concrete_conf",
        json.dumps(conf_),
    ]


@pytest.fixture(scope="module")
def run(tiny_data, tiny_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("hc")
    theta0 = tiny_trained / "valid.loss.best.pth"
    args = driver_train_args(tiny_data, task_run_config(root / "run.yaml", 2))
    run_training([*args, *_args(theta0, HC)], root / "run")
    return dict(root=root, theta0=theta0, args=args)


def test_a_run_trains_gates_weights_and_multipliers(run):
    out = run["root"] / "run"
    state = torch.load(out / "2epoch.pth", weights_only=True)
    gates = hard_concrete_state(state)
    theta0 = torch.load(run["theta0"], weights_only=True)
    assert sorted(k for k in state if not k.startswith("task_gates.")) == sorted(theta0)
    assert int(gates["steps"]) == 8  # 2 epochs of 4 optimizer steps: past the ramp
    # Per task: 4 encoder and 6 decoder gate vectors, two multipliers; the counter.
    assert len(gates) == 2 * (10 + 2) + 1
    for task in TASKS:
        assert gates[f"lagrangians.{task}.lambda_1"].item() != 0.0
        assert gates[f"lagrangians.{task}.lambda_2"].item() > 0.0  # (s - t)² ascent
        key = f"gate_sets.{task}.gates.encoder/encoders/blocks/0/mlp.log_alpha"
        assert gates[key].shape == (128,)  # the tiny model's 4 · 32 FFN units
    assert any(not torch.equal(state[k], theta0[k]) for k in theta0)
    config = (out / "config.yaml").read_text()
    assert "hard_concrete_conf" in config and "er_iemocap" in config


def test_a_resumed_run_equals_the_uninterrupted_one(run, tiny_data, tmp_path):
    one = task_run_config(tmp_path / "one.yaml", 1)
    args = _args(run["theta0"], HC)
    run_training(
        [*driver_train_args(tiny_data, one), *args],
        tmp_path / "run",
        keep_checkpoint=True,
    )
    (tmp_path / "run" / ".done").unlink()
    run_training([*run["args"], *args], tmp_path / "run")
    got = torch.load(tmp_path / "run" / "2epoch.pth", weights_only=True)
    ref = torch.load(run["root"] / "run" / "2epoch.pth", weights_only=True)
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_a_run_of_one_task_leaves_the_other_tasks_gates_bit_identical(
    run, tiny_data, tmp_path
):
    one = task_run_config(tmp_path / "one.yaml", 1)
    conf_ = {**HC, "tasks": TASKS}
    args = _args(run["root"] / "run" / "2epoch.pth", conf_, ["er_iemocap"])
    run_training([*driver_train_args(tiny_data, one), *args], tmp_path / "cl")
    before = hard_concrete_state(
        torch.load(run["root"] / "run" / "2epoch.pth", weights_only=True)
    )
    after = hard_concrete_state(
        torch.load(tmp_path / "cl" / "1epoch.pth", weights_only=True)
    )
    asr = [k for k in before if ".asr_librispeech." in k]
    er = [k for k in before if ".er_iemocap." in k and "log_alpha" in k]
    assert asr and er
    assert all(torch.equal(after[k], before[k]) for k in asr)
    assert any(not torch.equal(after[k], before[k]) for k in er)


def test_exclusive_options_and_unknown_tasks_are_one_error(run, tmp_path):
    bad = _args(run["theta0"], {**HC, "tasks": ["nope"]})
    with pytest.raises(HardConcreteConfError, match=r"tasks \['nope'\] are not tasks"):
        run_training([*run["args"], *bad], tmp_path / "bad")
    both = [*_args(run["theta0"], HC), "--s3_router_conf", '{"keep_ratio": 0.5}']
    with pytest.raises(Exception, match="exclude each other"):
        run_training([*run["args"], *both], tmp_path / "bad2")
    assert not (tmp_path / "bad" / "checkpoint.pth").exists()
