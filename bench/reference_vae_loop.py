"""The baseline: a training loop written to mirror the classic PyTorch VAE example
(pytorch/examples vae/main.py): a DataLoader over an MNIST dataset that converts one image at a
time (PIL -> ToTensor, as torchvision's MNIST does), a 784-400-20 MLP with a sigmoid output,
binary cross-entropy summed over pixels, and Adam. Pixels are Bernoulli-resampled per batch so
its ELBO is comparable with vae_core's (the example's BCE on grey pixels is a known trap).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


class MnistLikeTorchvision(Dataset):
    """Per-item conversion exactly as torchvision.datasets.MNIST + transforms.ToTensor does it."""

    def __init__(self, pixels_uint8: torch.Tensor, labels: torch.Tensor):
        self.images = pixels_uint8.view(-1, 28, 28).numpy()
        self.labels = labels.numpy()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index], mode="L")
        tensor = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).unsqueeze(0)  # ToTensor
        return tensor, int(self.labels[index])


class ReferenceVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def reference_loss_terms(recon_x, x, mu, logvar):
    """Summed BCE and KL over the batch, as the example computes them."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce, kld


class ReferenceTraining:
    """The example's loop, advanced a few batches at a time so a benchmark can interleave it with
    another loop (both then see the same machine load). Only time inside `advance` is counted."""

    def __init__(self, train_pixels, train_labels, epochs: float, batch_size: int, seed: int = 0):
        torch.manual_seed(seed)
        self.model = ReferenceVAE()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loader = DataLoader(
            MnistLikeTorchvision(train_pixels, train_labels), batch_size=batch_size, shuffle=True
        )
        self.total_batches = int(epochs * len(self.loader))
        self.batches, self.images, self.seconds = 0, 0, 0.0
        self._epoch = iter(())

    @property
    def done(self) -> bool:
        return self.batches >= self.total_batches

    def advance(self, batches: int) -> int:
        """Train up to `batches` more batches; returns how many were trained."""
        started, trained = time.perf_counter(), 0
        self.model.train()
        while trained < batches and not self.done:
            batch = next(self._epoch, None)
            if batch is None:  # a new epoch: a fresh shuffle, as `for data, _ in loader` does
                self._epoch = iter(self.loader)
                continue
            data = torch.bernoulli(batch[0])
            self.optimizer.zero_grad()
            recon, mu, logvar = self.model(data)
            bce, kld = reference_loss_terms(recon, data, mu, logvar)
            (bce + kld).backward()  # summed over the batch, as in the example
            self.optimizer.step()
            self.images += len(data)
            self.batches += 1
            trained += 1
        self.seconds += time.perf_counter() - started
        return trained


def train_reference(train_pixels, train_labels, epochs: float, batch_size: int, seed: int = 0) -> dict:
    """Train like the example in one go; returns the model, images/s and seconds."""
    run = ReferenceTraining(train_pixels, train_labels, epochs, batch_size, seed)
    run.advance(run.total_batches)
    return {"model": run.model, "images_per_s": run.images / run.seconds, "seconds": run.seconds,
            "images": run.images}  # fmt: skip


@torch.no_grad()
def reference_test_elbo(model: ReferenceVAE, binary_test: torch.Tensor, seed: int = 0) -> float:
    """One-sample ELBO per image (nats) on the same fixed binarised test digits vae_core uses."""
    torch.manual_seed(seed)
    model.eval()
    total = 0.0
    for start in range(0, len(binary_test), 1000):
        x = binary_test[start : start + 1000]
        recon, mu, logvar = model(x)
        bce, kld = reference_loss_terms(recon.clamp(1e-7, 1 - 1e-7), x, mu, logvar)
        total -= (bce + kld).item()
    return total / len(binary_test)
