"""The ELBO's gradient for an MLP VAE, derived by hand: the training step without autograd.

At batch 128 on a CPU, autograd's graph building and per-op bookkeeping cost about as much as
the elementwise work of a step; the gradient of this model is a dozen GEMMs and a few
elementwise formulas, so writing them out leaves a step little more than its GEMMs. The
autograd path (train.ObjectiveModule) stays for everything this does not cover: conv models,
the IWAE objective and DistributedDataParallel; `covers` says which runs this is.

Notation (one image; the batch is the rows of every matrix): layer n computes
a_n = h_{n-1} W_n^T + b_n and h_n = act(a_n). The encoder's last layer gives (mu, v), v the log
variance, clamped to c = clamp(v, -30, 20) as VAE.posterior does; std = exp(c / 2),
z = mu + std * eps. The decoder's last layer gives the logits l. The loss is the batch mean of
beta KL - log p(x|z), with KL = 1/2 sum_j (std^2 + mu^2 - 1 - c) and
log p(x|z) = sum_d x_d l_d - softplus(l_d). Its gradients per image:
    dL/dl = sigmoid(l) - x
    dL/dmu = dL/dz + beta mu
    dL/dv = 1/2 [std eps dL/dz + beta (std^2 - 1)]  where -30 <= v <= 20, else 0
and backward through each layer: dL/dW_n = g_n^T h_{n-1}, dL/db_n = sum of g_n over images,
dL/dh_{n-1} = g_n W_n, g_{n-1} = dL/dh_{n-1} * act'(a_{n-1}). Per-image gradients are summed
over the batch; the mean's 1/B is applied once, to the parameters' gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig, TrainConfig
from .model_kinds import kind_spec, mlp_linear_layers
from .models import LOG_VAR_RANGE, VAE
from .objectives import bernoulli_log_lik_values

_IN_PLACE_ACTIVATIONS = {"relu": torch.relu_, "elu": nn.functional.elu_, "tanh": torch.tanh_}


def covers(model_config: ModelConfig, train_config: TrainConfig, distributed: bool) -> bool:
    """Whether a run's gradients come from `MLPElboGradients` (else from autograd)."""
    return (
        kind_spec(model_config.kind).hand_gradients and train_config.objective == "elbo" and not distributed
    )


def _activation_backward(grad: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor:
    """grad * act'(a) from the activation's output h = act(a), as autograd computes it."""
    if activation == "relu":  # autograd's own kernel: a bool mask and a multiply cost ~6x more
        return torch.ops.aten.threshold_backward(grad, h, 0)
    if activation == "elu":  # a > 0: 1; else exp(a) = h + 1
        return grad.mul_(h.clamp_max(0).add_(1))
    return grad.mul_(1 - h * h)  # tanh


class MLPElboGradients:
    """Computes the β-weighted negative ELBO's gradient for every parameter of an MLP VAE.

    Called once per step, it writes each parameter's .grad (allocated on first use, then
    overwritten) and returns the batch sums (3,) of (recon, kl, elbo) in nats, detached, as the
    trainer's windows add them up.
    """

    def __init__(self, model: VAE, generator: torch.Generator):
        self.model = model
        self.generator = generator
        self.activation = model.config.activation
        # Linear layers and the activation only: anything else in the networks raises here.
        self.encoder = mlp_linear_layers(model.encoder.net, self.activation)
        self.decoder = mlp_linear_layers(model.decoder.net, self.activation)
        self.latent_dim = model.config.latent_dim

    def _forward(self, layers: list[nn.Linear], h: torch.Tensor) -> list[torch.Tensor]:
        """The inputs of every layer, then the last layer's output: [h_0, h_1, ..., a_last]."""
        outputs = [h]
        for n, layer in enumerate(layers):
            a = torch.addmm(layer.bias, h, layer.weight.t())
            if n < len(layers) - 1:
                a = _IN_PLACE_ACTIVATIONS[self.activation](a)
            outputs.append(a)
            h = a
        return outputs

    def _backward(
        self,
        layers: list[nn.Linear],
        inputs: list[torch.Tensor],
        g: torch.Tensor,
        scale: float,
        input_columns: int,
    ) -> torch.Tensor | None:
        """Writes the layers' gradients from g = dL/da_last (per image, summed over the batch
        times `scale`); returns dL/d(first `input_columns` of the input), None when 0 columns."""
        grad_input = None
        for n in range(len(layers) - 1, -1, -1):
            weight, bias = layers[n].weight, layers[n].bias
            if weight.grad is None:
                weight.grad, bias.grad = torch.empty_like(weight), torch.empty_like(bias)
            weight.grad.addmm_(g.t(), inputs[n], beta=0, alpha=scale)
            torch.sum(g, 0, out=bias.grad).mul_(scale)
            if n > 0:
                g = _activation_backward(torch.mm(g, weight), inputs[n], self.activation)
            elif input_columns:
                grad_input = torch.mm(g, weight[:, :input_columns])
        return grad_input

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None, beta: float) -> torch.Tensor:
        batch, latent = x.shape[0], self.latent_dim
        onehot = self.model.label_onehot(labels, batch)
        if onehot is not None:
            onehot = onehot.to(x.dtype)
        encoder_in = x if onehot is None else torch.cat([x, onehot], dim=-1)
        encoder = self._forward(self.encoder, encoder_in)
        mu, log_var = encoder[-1][:, :latent], encoder[-1][:, latent:]
        clamped = log_var.clamp(*LOG_VAR_RANGE)
        std = torch.exp(clamped * 0.5)
        eps = torch.randn(mu.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        z = torch.addcmul(mu, std, eps)  # (B, L)
        decoder_in = z if onehot is None else torch.cat([z, onehot], dim=-1)
        decoder = self._forward(self.decoder, decoder_in)
        logits = decoder[-1]  # (B, D)

        variance = std * std
        kl = 0.5 * (variance + mu * mu - 1 - clamped).sum()
        recon = bernoulli_log_lik_values(logits, x).sum()

        scale = 1.0 / batch
        grad_logits = logits.sigmoid_().sub_(x)  # in the logits' buffer: they are not needed again
        grad_z = self._backward(self.decoder, decoder, grad_logits, scale, latent)
        grad_mu = torch.add(grad_z, mu, alpha=beta)
        grad_log_var = grad_z.mul_(eps).mul_(std).add_(variance - 1, alpha=beta).mul_(0.5)
        in_range = (log_var >= LOG_VAR_RANGE[0]) & (log_var <= LOG_VAR_RANGE[1])  # clamp's gradient
        grad_stats = torch.cat([grad_mu, grad_log_var.mul_(in_range)], dim=-1)  # (B, 2L)
        self._backward(self.encoder, encoder, grad_stats, scale, 0)
        return torch.stack((recon, kl, recon - kl))
