"""Structured HJ-Pruning of Whisper (espnet_pruning.pruning.structured).

The tiny-model checks (5) and (6) of HJ-Pruning's spec (docs/methods.md §2): the MAC
counter against the formulas (encoder, decoder self- and cross-attention, FFN), halving the
expected heads halves the head terms; the compiled model equals the gated one and has the
parameter count the gates say, with a strict load. Plus: the structures found by type
(also under an ESPnet-like prefix), the Size sparsity, hooks that leave the state_dict
alone and restore the dense model bit for bit when removed, one draw per forward.
"""

import math

import pytest
import torch
from pruning_testlib import tiny_whisper, whisper_batch, whisper_loss
from torch import nn
from whisper.model import disable_sdpa

from espnet_pruning.pruning.hard_concrete import (
    BETA,
    LIMIT_L,
    LIMIT_R,
    HardConcrete,
    HardConcreteHparams,
)
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.structured import (
    GateSet,
    HeadlessAttention,
    UnitlessFFN,
    compile_masked,
    compile_pruned,
    frames_for_seconds,
    kept_units_of_mask,
    macs_per_unit,
    structure_overlap,
    structured_mask,
    structures,
)

SHIFT = -BETA * math.log(-LIMIT_L / LIMIT_R)
D, H, D_HEAD, D_INT = 16, 2, 8, 64
PER_HEAD = (
    3 * D * D_HEAD + 2 * D_HEAD + D_HEAD * D
)  # q, k, v rows (q, v biases), out cols
PER_UNIT = D + 1 + D
NAMES = [
    ("encoder.blocks.0.attn", "self_attn", False, H, PER_HEAD),
    ("encoder.blocks.0.mlp", "ffn", False, D_INT, PER_UNIT),
    ("encoder.blocks.1.attn", "self_attn", False, H, PER_HEAD),
    ("encoder.blocks.1.mlp", "ffn", False, D_INT, PER_UNIT),
    ("decoder.blocks.0.attn", "self_attn", True, H, PER_HEAD),
    ("decoder.blocks.0.cross_attn", "cross_attn", True, H, PER_HEAD),
    ("decoder.blocks.0.mlp", "ffn", True, D_INT, PER_UNIT),
    ("decoder.blocks.1.attn", "self_attn", True, H, PER_HEAD),
    ("decoder.blocks.1.cross_attn", "cross_attn", True, H, PER_HEAD),
    ("decoder.blocks.1.mlp", "ffn", True, D_INT, PER_UNIT),
]


@pytest.fixture(scope="module")
def batch():
    return whisper_batch(tiny_whisper())


def set_log_alpha(gates: GateSet, values) -> None:
    """``values(structure) -> tensor or float`` for every gate."""
    with torch.no_grad():
        for s in gates.structures:
            value = values(s)
            la = gates.gates[s.key].log_alpha
            la.copy_(torch.as_tensor(value, dtype=la.dtype).expand_as(la))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------- structures
def test_structures_of_tiny_whisper():
    found = structures(tiny_whisper())
    assert [
        (s.name, s.kind, s.decoder, s.count, s.params_per_unit) for s in found
    ] == NAMES
    assert PER_HEAD == 528 and PER_UNIT == 33
    assert {s.unit_width for s in found if s.kind != "ffn"} == {D_HEAD}
    assert {s.d_model for s in found} == {D}


def test_structures_found_by_type_under_a_prefix():
    model = tiny_whisper()
    wrapper = nn.Module()  # as ESPnet's OpenAIWhisperEncoder/Decoder hold them
    wrapper.encoders = model.encoder
    wrapper.decoders = model.decoder
    names = [s.name for s in structures(wrapper)]
    assert names[0] == "encoders.blocks.0.attn"
    assert names[5] == "decoders.blocks.0.cross_attn"
    with pytest.raises(ValueError, match="no Whisper"):
        structures(nn.Linear(2, 2))


def test_gate_init_uses_head_and_ffn_drop_rates():
    gates = GateSet(tiny_whisper(), HardConcreteHparams(), seed=3)
    heads = gates.gates["encoder/blocks/0/attn"].log_alpha
    units = gates.gates["encoder/blocks/0/mlp"].log_alpha
    assert heads.mean().item() == pytest.approx(math.log(99), abs=0.05)
    assert units.mean().item() == pytest.approx(0.0, abs=0.01)
    again = GateSet(tiny_whisper(), HardConcreteHparams(), seed=3)
    assert all(
        torch.equal(a, b) for a, b in zip(gates.parameters(), again.parameters())
    )


# --------------------------------------------------------------------- Size
def test_size_sparsity_counts_expected_kept_parameters():
    gates = GateSet(tiny_whisper())
    assert gates.total_params() == 6 * H * PER_HEAD + 4 * D_INT * PER_UNIT == 14784
    set_log_alpha(gates, lambda s: 100.0)  # P(z != 0) = 1
    assert gates.expected_sparsity().item() == 0.0
    # heads at P = 1/2, FFN units at P = 1
    set_log_alpha(gates, lambda s: 100.0 if s.kind == "ffn" else -SHIFT)
    head_params = 6 * H * PER_HEAD
    expected = 0.5 * head_params / gates.total_params()
    assert gates.expected_sparsity().item() == pytest.approx(expected, rel=1e-6)
    assert gates.expected_params().item() == pytest.approx(
        gates.total_params() - head_params / 2, rel=1e-9
    )


# --------------------------------------------------------------------- (5) MACs
def formula_macs(T: int, L: int, heads: float = H, d_int: float = D_INT):
    """Eqs. 10–11 per layer, with decoder (L) and cross-attention (L over T) terms."""
    enc_mha = 4 * T * heads * D * D_HEAD + 2 * T**2 * heads * D_HEAD
    enc_ffn = 2 * T * D * d_int
    dec_mha = 4 * L * heads * D * D_HEAD + 2 * L**2 * heads * D_HEAD
    cross = 2 * L * heads * D * D_HEAD + 2 * T * heads * D * D_HEAD
    cross += 2 * L * T * heads * D_HEAD
    dec_ffn = 2 * L * D * d_int
    heads_terms = 2 * enc_mha + 2 * dec_mha + 2 * cross
    return heads_terms, 2 * enc_ffn + 2 * dec_ffn


@pytest.mark.parametrize("seconds,tokens", [(10.0, 32), (30.0, 7)])
def test_mac_counter_reproduces_the_formulas_with_all_gates_one(seconds, tokens):
    hp = HardConcreteHparams(
        variant="mac", mac_input_seconds=seconds, mac_text_length=tokens
    )
    gates = GateSet(tiny_whisper(), hp)
    T = frames_for_seconds(seconds)
    assert T == {10.0: 500, 30.0: 1500}[seconds]
    assert (gates.frames, gates.tokens) == (T, tokens)
    set_log_alpha(gates, lambda s: 100.0)
    attn, ffn = formula_macs(T, tokens)
    assert gates.total_macs() == attn + ffn
    assert gates.expected_macs().item() == attn + ffn
    assert gates.expected_sparsity().item() == 0.0


def test_halving_expected_heads_halves_the_head_terms():
    gates = GateSet(tiny_whisper(), HardConcreteHparams(variant="mac"))
    set_log_alpha(gates, lambda s: 100.0 if s.kind == "ffn" else -SHIFT)
    attn, ffn = formula_macs(500, 32)
    half_attn, same_ffn = formula_macs(500, 32, heads=H / 2)
    assert half_attn == attn / 2 and same_ffn == ffn
    assert gates.expected_macs().item() == pytest.approx(ffn + attn / 2, rel=1e-7)
    assert gates.expected_sparsity().item() == pytest.approx(
        (attn / 2) / (attn + ffn), rel=1e-6
    )
    # and halving the FFN units halves the FFN terms
    set_log_alpha(gates, lambda s: -SHIFT if s.kind == "ffn" else 100.0)
    assert gates.expected_macs().item() == pytest.approx(attn + ffn / 2, rel=1e-7)


def test_macs_per_unit_by_kind():
    s = {x.name: x for x in structures(tiny_whisper())}
    T, L = 500, 32
    assert macs_per_unit(s["encoder.blocks.0.attn"], T, L) == 4 * T * D * D_HEAD + (
        2 * T * T * D_HEAD
    )
    assert macs_per_unit(s["decoder.blocks.0.attn"], T, L) == 4 * L * D * D_HEAD + (
        2 * L * L * D_HEAD
    )
    assert macs_per_unit(s["decoder.blocks.0.cross_attn"], T, L) == (
        2 * L * D * D_HEAD + 2 * T * D * D_HEAD + 2 * L * T * D_HEAD
    )
    assert macs_per_unit(s["encoder.blocks.0.mlp"], T, L) == 2 * T * D
    assert macs_per_unit(s["decoder.blocks.0.mlp"], T, L) == 2 * L * D


# --------------------------------------------------------------------- hooks
def test_hooks_keep_state_dict_and_removal_restores_dense_outputs(batch):
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    keys = list(model.state_dict())
    dense = model(mel, tokens)
    gates = GateSet(model)
    set_log_alpha(gates, lambda s: torch.linspace(-3.0, 3.0, s.count))
    gates.attach(model)
    assert gates.attached
    assert list(model.state_dict()) == keys
    assert [n for n, _ in model.named_parameters()] == [
        n for n, _ in tiny_whisper().named_parameters()
    ]
    gated = model(mel, tokens)
    assert not torch.allclose(gated, dense)
    with pytest.raises(RuntimeError, match="already attached"):
        gates.attach(model)
    gates.detach()
    assert not gates.attached
    assert torch.equal(model(mel, tokens), dense)
    model.train()
    dense_train = model(mel, tokens)
    gates.attach(model)
    model(mel, tokens)
    gates.detach()
    assert torch.equal(model(mel, tokens), dense_train)


def test_gates_of_one_are_the_dense_model_bit_for_bit(batch):
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    dense = model(mel, tokens)
    gates = GateSet(model)
    set_log_alpha(gates, lambda s: 100.0)
    gates.attach(model)
    assert torch.equal(model(mel, tokens), dense)


def test_hooks_scale_head_chunks_and_units(batch):
    """Gating head 1 of one attention off equals zeroing its out columns."""
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    gates = GateSet(model)
    set_log_alpha(gates, lambda s: 100.0)
    with torch.no_grad():
        gates.gates["encoder/blocks/1/attn"].log_alpha[1] = -100.0
        gates.gates["decoder/blocks/0/mlp"].log_alpha[:5] = -100.0
    gates.attach(model)
    gated = model(mel, tokens)
    gates.detach()
    reference = tiny_whisper().eval()
    with torch.no_grad():
        reference.encoder.blocks[1].attn.out.weight[:, D_HEAD:] = 0
        reference.decoder.blocks[0].mlp[2].weight[:, :5] = 0
    torch.testing.assert_close(gated, reference(mel, tokens), rtol=0, atol=1e-6)


def test_training_forward_draws_each_gate_once_and_trains_log_alpha(batch, monkeypatch):
    mel, tokens, targets = batch
    model = tiny_whisper().train()
    gates = GateSet(model).attach(model)
    calls = []
    original = HardConcrete.sample
    monkeypatch.setattr(
        HardConcrete, "sample", lambda self: calls.append(self) or original(self)
    )
    torch.manual_seed(0)
    loss = whisper_loss(model(mel, tokens), targets)
    assert sorted(map(id, calls)) == sorted(map(id, gates.gates.values()))
    assert gates._drawn is None
    loss.backward()
    for gate in gates.gates.values():
        assert gate.log_alpha.grad is not None
    assert any(g.log_alpha.grad.abs().sum() > 0 for g in gates.gates.values())
    # a submodule called alone draws per call, by its own mode
    calls.clear()
    model.encoder(mel)
    assert len(calls) == 4


def test_attach_rejects_other_structures():
    gates = GateSet(tiny_whisper())
    with pytest.raises(ValueError, match="structures differ"):
        gates.attach(tiny_whisper(n_audio_head=4))


# --------------------------------------------------------------------- (6) compile
def pruned_gates(model: nn.Module) -> GateSet:
    """Gates with soft kept values, dropped units, an empty attention and an empty FFN."""
    gates = GateSet(model, seed=1)
    gen = torch.Generator().manual_seed(5)

    def values(s):
        if s.name == "decoder.blocks.1.cross_attn":
            return torch.full((s.count,), -20.0)  # all heads dropped
        if s.name == "encoder.blocks.1.mlp":
            return torch.full((s.count,), -20.0)  # all units dropped
        if s.name == "encoder.blocks.0.attn":
            return torch.tensor([-20.0, 1.0])  # head 0 dropped
        return torch.randn(s.count, generator=gen) * 2.0

    set_log_alpha(gates, values)
    return gates


@pytest.mark.parametrize("sdpa", [True, False])
def test_compiled_model_equals_gated_model_and_counts_parameters(batch, sdpa):
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gates = pruned_gates(model)
    kept = gates.kept_units()
    assert kept["decoder.blocks.1.cross_attn"] == 0
    assert kept["encoder.blocks.1.mlp"] == 0
    assert kept["encoder.blocks.0.attn"] == 1
    assert 0 < kept["decoder.blocks.0.mlp"] < D_INT
    soft = gates.eval_gates()["decoder.blocks.0.mlp"]
    assert ((soft > 0) & (soft < 1)).any()  # soft values are folded, not rounded
    gates.attach(model)
    compiled = compile_pruned(model, gates).eval()
    if sdpa:
        gated, out = model(mel, tokens), compiled(mel, tokens)
    else:
        with disable_sdpa():
            gated, out = model(mel, tokens), compiled(mel, tokens)
    assert (out - gated).abs().max().item() <= 1e-5
    # parameters: exactly what the gates say
    assert n_params(compiled) == n_params(model) - gates.removed_params()
    removed = sum(
        (s.count - kept[s.name]) * s.params_per_unit for s in gates.structures
    )
    assert gates.removed_params() == removed > 0
    # shapes and heads
    enc0 = compiled.encoder.blocks[0].attn
    assert enc0.n_head == 1 and enc0.query.weight.shape == (D_HEAD, D)
    assert enc0.out.weight.shape == (D, D_HEAD)
    assert enc0.query.out_features // enc0.n_head == D_HEAD
    assert isinstance(compiled.decoder.blocks[1].cross_attn, HeadlessAttention)
    assert isinstance(compiled.encoder.blocks[1].mlp, UnitlessFFN)
    left = {s.name: s.count for s in structures(compiled)}
    assert left == {n: k for n, k in kept.items() if k > 0}
    # the source model and its hooks are untouched; the copy has no gate hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert gates.attached and not compiled._forward_pre_hooks
    assert not compiled.encoder.blocks[0].attn.out._forward_pre_hooks


def test_compiled_state_dict_loads_strictly_into_a_compiled_skeleton(batch):
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    gates = pruned_gates(model)
    compiled = compile_pruned(model, gates).eval()
    state = compiled.state_dict()
    compiled.load_state_dict(state, strict=True)
    skeleton = compile_pruned(tiny_whisper(seed=7), gates).eval()
    assert not torch.equal(skeleton(mel, tokens), compiled(mel, tokens))
    skeleton.load_state_dict(state, strict=True)
    assert torch.equal(skeleton(mel, tokens), compiled(mel, tokens))
    assert "decoder.blocks.1.cross_attn.bias" in state
    assert "encoder.blocks.1.mlp.bias" in state


def test_compiled_model_trains(batch):
    mel, tokens, targets = batch
    model = tiny_whisper()
    compiled = compile_pruned(model, pruned_gates(model)).train()
    whisper_loss(compiled(mel, tokens), targets).backward()
    no_grad = [n for n, p in compiled.named_parameters() if p.grad is None]
    # only the LayerNorms in front of an emptied module are dead (kept, not counted)
    assert no_grad == [
        "encoder.blocks.1.mlp_ln.weight",
        "encoder.blocks.1.mlp_ln.bias",
        "decoder.blocks.1.cross_attn_ln.weight",
        "decoder.blocks.1.cross_attn_ln.bias",
    ]


def test_compiled_model_decodes_incrementally_with_whisper_kv_cache(batch):
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    compiled = compile_pruned(model, pruned_gates(model)).eval()
    audio = compiled.encoder(mel)
    full = compiled.decoder(tokens, audio)
    cache, hooks = compiled.install_kv_cache_hooks()
    steps = [compiled.decoder(tokens[:, :4], audio, kv_cache=cache)]
    for i in range(4, tokens.shape[1]):  # one token at a time, as whisper decodes
        steps.append(compiled.decoder(tokens[:, i : i + 1], audio, kv_cache=cache))
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


# --------------------------------------------------------------------- structured masks
def _linear_shapes(model):
    return {
        n: tuple(p.shape)
        for n, p in model.named_parameters()
        if n.endswith(".weight") and p.dim() == 2 and "embedding" not in n
    }


def _kept_draw(model):
    g = torch.Generator().manual_seed(4)
    kept = {s.name: torch.rand(s.count, generator=g) < 0.6 for s in structures(model)}
    kept["decoder.blocks.1.cross_attn"] = torch.zeros(H, dtype=torch.bool)
    kept["encoder.blocks.1.mlp"] = torch.zeros(D_INT, dtype=torch.bool)
    return kept


def test_structured_mask_removes_whole_units_and_reads_back(batch):
    model = tiny_whisper()
    kept = _kept_draw(model)
    mask = structured_mask(model, kept, _linear_shapes(model))
    q = mask["encoder.blocks.0.attn.query.weight"]
    out = mask["encoder.blocks.0.attn.out.weight"]
    k0 = kept["encoder.blocks.0.attn"]
    assert torch.equal(q[:, 0], k0.repeat_interleave(D_HEAD))  # rows by head
    assert torch.equal(out[0, :], k0.repeat_interleave(D_HEAD))  # columns by head
    fc2 = mask["decoder.blocks.0.mlp.2.weight"]
    assert torch.equal(fc2[3], kept["decoder.blocks.0.mlp"])
    assert bool(mask["encoder.blocks.1.mlp.0.weight"].logical_not().all())
    got = kept_units_of_mask(model, mask)
    assert all(torch.equal(got[n], kept[n]) for n in kept)
    partial = dict(mask)
    partial["decoder.blocks.0.mlp.0.weight"] = mask[
        "decoder.blocks.0.mlp.0.weight"
    ].clone()
    partial["decoder.blocks.0.mlp.0.weight"][0, 0] = ~partial[
        "decoder.blocks.0.mlp.0.weight"
    ][0, 0]
    with pytest.raises(ValueError, match="decoder.blocks.0.mlp.0.weight"):
        kept_units_of_mask(model, partial)
    with pytest.raises(ValueError, match="no such structure"):
        structured_mask(model, {"nope": torch.ones(2)}, _linear_shapes(model))


def test_compiled_masked_model_equals_the_masked_model_and_counts_parameters(batch):
    mel, tokens, _ = batch
    model = tiny_whisper().eval()
    kept = _kept_draw(model)
    mask = structured_mask(model, kept, _linear_shapes(model))
    compiled = compile_masked(model, mask).eval()
    masked = tiny_whisper().eval()
    with torch.no_grad():
        params = dict(masked.named_parameters())
        for n, m in mask.items():
            params[n].mul_(m)
    assert (compiled(mel, tokens) - masked(mel, tokens)).abs().max().item() <= 1e-5
    # Parameters: the pruned weight entries plus the dropped rows' biases.
    pruned = sum(int((~m).sum()) for m in mask.values())
    biases = sum(
        int((~kept[s.name]).sum())
        * (s.unit_width * 2 if s.kind != "ffn" else 1)  # query and value biases
        for s in structures(model)
    )
    assert n_params(compiled) == n_params(model) - pruned - biases
    assert isinstance(compiled.decoder.blocks[1].cross_attn, HeadlessAttention)
    left = {s.name: s.count for s in structures(compiled)}
    assert left == {n: int(k.sum()) for n, k in kept.items() if k.any()}


def test_structure_overlap_counts_kept_units_by_kind():
    model = tiny_whisper()
    shapes = _linear_shapes(model)
    found = structures(model)
    a = {s.name: torch.ones(s.count, dtype=torch.bool) for s in found}
    b = {s.name: torch.ones(s.count, dtype=torch.bool) for s in found}
    b["encoder.blocks.0.attn"] = torch.tensor([True, False])  # 1 of 12 heads
    b["decoder.blocks.0.mlp"] = torch.arange(D_INT) < 16  # 48 of 256 units dropped
    masks = MaskSet.ones(["a", "b"], shapes)
    masks.set_mask("a", structured_mask(model, a, shapes))
    masks.set_mask("b", structured_mask(model, b, shapes))
    got = structure_overlap(model, masks)
    heads, units = 6 * H, 4 * D_INT  # 2 + 2 encoder, 4 + 4 decoder heads
    assert got["tasks"] == ["a", "b"]
    assert got["heads"] == [[1.0, (heads - 1) / heads], [(heads - 1) / heads, 1.0]]
    assert got["ffn_units"][0][1] == (units - 48) / units
    assert got["overall"][1][0] == (heads + units - 49) / (heads + units)
