"""vae_core.adam: the same updates as torch.optim.Adam, and no torch._dynamo import on the way."""

import subprocess
import sys
import textwrap

import pytest
import torch

from vae_core.adam import Adam


def _fit(make_optimizer, steps: int = 60, lr_schedule=None) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    optimizer = make_optimizer(model)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        if lr_schedule is not None:
            lr_schedule(optimizer, step)
        x = torch.randn(16, 5, generator=generator)
        optimizer.zero_grad()
        ((model(x) - x[:, :1]) ** 2).mean().backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _textbook(model: torch.nn.Module) -> Adam:
    optimizer = Adam(model.parameters(), lr=1e-2)
    optimizer._fused = False  # the tensor-by-tensor path devices without the fused kernel take
    return optimizer


def test_the_fused_path_matches_torch_fused_adam_exactly():
    ours = _fit(lambda m: Adam(m.parameters(), lr=1e-2))
    theirs = _fit(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, fused=True))
    assert torch.equal(ours, theirs)


def test_the_textbook_path_matches_torch_adam():
    ours = _fit(_textbook)
    theirs = _fit(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.equal(ours, _fit(lambda m: Adam(m.parameters(), lr=1e-3)))  # lr matters


def test_a_learning_rate_schedule_set_on_the_attribute_matches_param_groups():
    def ours(optimizer, step):
        optimizer.lr = 1e-2 / (1 + step)

    def theirs(optimizer, step):
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 / (1 + step)

    mine = _fit(lambda m: Adam(m.parameters(), lr=1e-2), lr_schedule=ours)
    reference = _fit(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, fused=True), lr_schedule=theirs)
    assert torch.equal(mine, reference)


def test_tensors_without_a_gradient_keep_their_values_and_moments():
    used, unused = torch.zeros(3, requires_grad=True), torch.ones(3, requires_grad=True)
    optimizer = Adam([used, unused], lr=0.1)
    (used * torch.tensor([1.0, -2.0, 3.0])).sum().backward()
    optimizer.step()
    # Adam's first step moves every coordinate by lr against the sign of its gradient.
    torch.testing.assert_close(used.detach(), torch.tensor([-0.1, 0.1, -0.1]))
    assert torch.equal(unused.detach(), torch.ones(3)) and float(optimizer.steps[1]) == 0.0


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr": -1.0}, {"eps": 0.0}, {"betas": (0.9, 1.0)}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="Adam needs"):
        Adam([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match="at least one"):
        Adam([])


def test_training_and_svi_completion_never_import_dynamo():
    # torch.optim would pull in torch._dynamo and sympy (about 150 MB): a fresh interpreter runs a
    # short training and one completion and reports what got imported.
    script = textwrap.dedent("""
        import sys
        from vae_core import ModelConfig, TrainConfig, Trainer, complete_masked_image, load_sample_digits, observed_mask
        digits = load_sample_digits()
        train, valid = digits.subset(slice(0, 500)), digits.subset(slice(500, 700))
        trainer = Trainer(ModelConfig(latent_dim=2, hidden=(16,)), TrainConfig(epochs=1, batch_size=100, device="cpu"),
                          train, valid)
        events = list(trainer.run())
        complete_masked_image(trainer.model, (valid.grey(0) > 0.5).float(), observed_mask("bottom", 28), steps=5, n_completions=2)
        print(events[-1].kind, "torch._dynamo" in sys.modules, "sympy" in sys.modules)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["done", "False", "False"]


# ------------------------------------------------------------ without the private fused op
def _signature_changed(*args, lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, new_required_flag):
    raise AssertionError("unreachable: the call above lacks new_required_flag")


def _raises_runtime_error(*args, **kwargs):
    raise RuntimeError("_fused_adam_ is not implemented for this device")


@pytest.mark.parametrize("replacement", [None, _signature_changed, _raises_runtime_error],
                         ids=["op missing", "signature changed", "op raises"])  # fmt: skip
def test_without_a_working_fused_op_the_per_tensor_update_matches_torch_adam(
    monkeypatch, caplog, replacement
):
    reference = _fit(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))  # torch's own foreach path
    calls = []
    if replacement is None:
        monkeypatch.delattr(torch, "_fused_adam_")
    else:

        def counted(*args, **kwargs):
            calls.append(1)
            return replacement(*args, **kwargs)

        monkeypatch.setattr(torch, "_fused_adam_", counted)
    with caplog.at_level("WARNING", logger="vae_core.adam"):
        ours = _fit(lambda m: Adam(m.parameters(), lr=1e-2))
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    # A failing op is tried once, then the optimiser stays on the per-tensor path (one warning).
    assert len(calls) == (0 if replacement is None else 1)
    assert len([r for r in caplog.records if "per-tensor" in r.message]) == len(calls)


def test_the_fused_and_the_fallback_path_agree_with_each_other_over_a_schedule(monkeypatch):
    def schedule(optimizer, step):
        optimizer.lr = 1e-2 / (1 + step)

    fused = _fit(lambda m: Adam(m.parameters(), lr=1e-2), lr_schedule=schedule)
    monkeypatch.setattr(torch, "_fused_adam_", _raises_runtime_error)
    fallback = _fit(lambda m: Adam(m.parameters(), lr=1e-2), lr_schedule=schedule)
    torch.testing.assert_close(fused, fallback, rtol=0, atol=1e-6)
