"""Latent traversals: each row decodes exactly its swept latent, rows ordered by KL."""

import numpy as np
import pytest
import torch

from explorer.figures.pictures import digit_frames, gif_bytes
from vae_core import ModelConfig, build_model, decode
from vae_core.diagnostics import latent_activity
from vae_core.traversals import latent_traversal


def _model(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(**{"latent_dim": 4, "hidden": (32,), **kw})).eval()


def _x(n=16, d=784):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(1)) > 0.5).float()


@pytest.mark.parametrize("kw", [{}, {"kind": "conv"}, {"conditional": True}])
def test_rows_decode_exactly_the_swept_latents(kw):
    model = _model(**kw)
    x = _x()
    labels = torch.arange(16) % 10 if kw.get("conditional") else None
    base = torch.tensor([0.5, -1.0, 0.25, 2.0])
    t = latent_traversal(model, x, base, steps=5, labels=torch.tensor([3]), reference_labels=labels)
    values = torch.linspace(-3, 3, 5)
    for row, d in enumerate(t.order):
        z = base.repeat(5, 1)
        z[:, d] = values
        assert torch.equal(t.latents[row], z)
        expected = decode(model, z, torch.full((5,), 3) if kw.get("conditional") else None)
        torch.testing.assert_close(t.probs[row], expected, rtol=0, atol=1e-6)


def test_rows_are_ordered_by_kl_and_collapsed_marked():
    model = _model()
    x = _x()
    activity = latent_activity(model, x)
    t = latent_traversal(model, x)
    kl = activity.kl_per_dim
    assert t.kl_per_dim == sorted(t.kl_per_dim, reverse=True)
    assert sorted(t.order) == list(range(4))
    assert t.kl_per_dim == pytest.approx(kl[t.order].tolist())
    assert t.collapsed == [not bool(activity.active[d]) for d in t.order]
    assert torch.equal(t.base, torch.zeros(4))


@pytest.mark.parametrize("bad", [{"steps": 1}, {"steps": 10_000}, {"span": 0}, {"span": float("nan")},
                                 {"base": torch.zeros(3)}])  # fmt: skip
def test_bad_arguments_are_refused_before_decoding(bad):
    with pytest.raises(ValueError):
        latent_traversal(_model(), _x(), **bad)


def test_traversal_exports_as_a_gif_with_one_frame_per_step():
    import io

    from PIL import Image

    t = latent_traversal(_model(), _x(), steps=6)
    frames = [np.concatenate(digit_frames(t.probs[:, s]), axis=0) for s in range(6)]
    data = gif_bytes(frames, scale=1)
    gif = Image.open(io.BytesIO(data))
    assert gif.n_frames == 6 and gif.size == (28, 4 * 28)
