"""Adam for a fixed list of tensors, without torch.optim.

Why not `torch.optim.Adam`: building any torch.optim optimizer imports torch._dynamo and sympy,
about 150 MB resident for the rest of the process. The explorer runs on hosts that give a whole
app as little as 690 MB (Streamlit Community Cloud), and it builds optimizers for training and
for every SVI completion. The update here is the kernel `torch.optim.Adam(fused=True)` runs, so
the results are the same (tests/test_adam.py compares them step by step). `torch._fused_adam_` is a
private op: where it is missing, a device has no kernel for it, or its signature changed, the call
fails before it updates anything, and the textbook update runs tensor by tensor from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

log = logging.getLogger(__name__)


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction; no weight decay, no AMSGrad.

    `lr` is a plain attribute, so a schedule sets `optimizer.lr` before a step.
    """

    def __init__(
        self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:  # fmt: skip
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam needs at least one tensor to optimise")
        if not lr > 0 or not eps > 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam needs lr > 0, eps > 0 and betas in [0, 1); got {lr}, {eps}, {betas}")
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # Float tensors, as the fused kernel wants: it reads the step count on the device.
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._fused = hasattr(torch, "_fused_adam_") and all(
            p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in self.params
        )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every tensor that has a gradient (the others keep their moments)."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        exp_avgs = [self.exp_avgs[i] for i in live]
        exp_avg_sqs = [self.exp_avg_sqs[i] for i in live]
        steps = [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1)  # one call: a Python loop of add_ was ~6% of this update
        beta1, beta2 = self.betas
        if self._fused and len({p.device for p in params}) == 1:
            try:
                torch._fused_adam_(
                    params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=self.lr, beta1=beta1, beta2=beta2,
                    weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False,
                )  # fmt: skip
                return
            except (AttributeError, TypeError, RuntimeError, NotImplementedError) as exc:
                # Argument checks and kernel dispatch fail before any tensor is written.
                self._fused = False
                log.warning("torch._fused_adam_ failed (%s: %s); using the per-tensor Adam update",
                            type(exc).__name__, exc)  # fmt: skip
        for param, grad, mean, square, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
            t = float(step)
            mean.lerp_(grad, 1 - beta1)
            square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (square / (1 - beta2**t)).sqrt_().add_(self.eps)
            param.addcdiv_(mean, denominator, value=-self.lr / (1 - beta1**t))
