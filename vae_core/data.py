"""The digit container (DigitImages) and the one rule that binarises a digit for scoring.

MNIST splits are kept as uint8 tensors and sliced into batches by index; `scoring_binary` turns
a digit's grey levels into the binary image it is scored on.

Where the digits come from (IDX files, the download, the bundled sample, binarised MNIST) is `mnist`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Test digits are binarised once with this seed so likelihoods of different models compare.
EVALUATION_BINARIZATION_SEED = 0


@dataclass
class DigitImages:
    """One split of MNIST, kept as small integers until a batch is asked for.

    pixels: (N, H*W) uint8 grey levels 0..255 (pre-binarised data is stored as 0/255).
    labels: (N,) int64 digit classes, -1 where the source has none.
    """

    pixels: torch.Tensor
    labels: torch.Tensor
    image_size: int
    binarization: str  # "dynamic" | "threshold" | "binarized" (config.BINARIZATIONS)
    source: str  # for people: where these digits came from

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @property
    def device(self) -> torch.device:
        return self.pixels.device

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).all())

    def to(self, device: torch.device | str) -> DigitImages:
        return DigitImages(
            self.pixels.to(device),
            self.labels.to(device),
            self.image_size,
            self.binarization,
            self.source,
        )

    def subset(self, index: torch.Tensor | slice) -> DigitImages:
        return DigitImages(
            self.pixels[index], self.labels[index], self.image_size, self.binarization, self.source
        )

    def grey(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Pixel intensities in [0, 1] as float32, (B, H*W): for display and for the encoder."""
        pixels = self.pixels if index is None else self.pixels[index]
        return pixels.float() / 255.0

    def binary_batch(
        self, index: torch.Tensor | slice, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Binary pixels (B, H*W) float32 for training: resampled per call when dynamic.

        Dynamic: each pixel is on with probability level/255 (to within 2**-17; exactly 0 and 1
        for levels 0 and 255), independently per pixel and call.
        """
        # index_select: fancy indexing of uint8 rows took ~15x longer (~60 us a batch of 128).
        pixels = self.pixels[index] if isinstance(index, slice) else self.pixels.index_select(0, index)
        if self.binarization != "dynamic":
            return (pixels > 127).view(torch.uint8).float()
        # A uniform 16-bit r per pixel, cut from 64-bit draws: the generator's cost is per draw,
        # and randint's 32-bit draw per pixel was a quarter of a batch-128 step's elementwise time.
        # On iff d = 65536 level - 255 r - 127 > 0, i.e. r < round(level * 65536 / 255): P(on) is
        # level/255 to within 0.5 / 65536. d is an integer below 2**24, so float32 holds it exactly
        # and clamp(d, 0, 1) is the 0/1 pixel: no comparison (float -> bool is a slow, scalar pass).
        words = torch.empty((pixels.numel() + 3) // 4, dtype=torch.int64, device=pixels.device)
        words.random_(-(2**63), None, generator=generator)
        r_minus_32768 = words.view(torch.int16)[: pixels.numel()].view(pixels.shape).float()
        d = pixels.float().mul_(65536).sub_(255 * 32768 + 127).add_(r_minus_32768, alpha=-255)
        return d.clamp_(0, 1)

    def fixed_binary(
        self, seed: int = EVALUATION_BINARIZATION_SEED, index: int | torch.Tensor | slice | None = None
    ) -> torch.Tensor:
        """The binary images these digits are scored on (all, or `index`): see `scoring_binary`.

        Each digit's image depends on its grey levels and `seed` only, so digit #i is the same
        binary image alone, in a batch or in the whole split, on every page and in every metric.
        """
        pixels = self.pixels if index is None else self.pixels[index]
        return scoring_binary(pixels, self.binarization, seed)


_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
SCORING_CHUNK_IMAGES = 1024  # images binarised at once: ~6 MB per uint64 temporary, not ~60 MB for 10k


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (Steele et al. 2014): well-spread bits from counters, vectorised."""
    x = x + _GOLDEN_GAMMA
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def scoring_binary(
    pixels: torch.Tensor | np.ndarray,
    binarization: str = "dynamic",
    seed: int = EVALUATION_BINARIZATION_SEED,
) -> torch.Tensor:
    """The binary image a digit is scored on: the one rule behind every likelihood shown or saved.

    pixels: (..., D) grey levels, uint8 0..255 or floats in [0, 1] (a drawn or uploaded digit,
    rounded to the nearest of the 256 levels). Returns float32 0/1 of the same shape, on the
    same device.
    "dynamic" (the models' training data): each pixel is on with probability level/255, drawn
    from noise keyed by the image's own levels and `seed` (a hash, no RNG state): the same digit
    always gets the same binary image, whatever batch or page it is in, and a person's drawing
    is binarised by the same rule as a test digit. "threshold" (or its old name "static"):
    level > 127 (as trained).
    "binarized": the data are already 0/255.
    """
    grey = torch.as_tensor(pixels)
    device, shape = grey.device, grey.shape
    if grey.dtype != torch.uint8:
        if grey.numel() and not (grey.min() >= 0 and grey.max() <= 1):
            raise ValueError("grey pixels must be uint8 levels 0..255 or floats in [0, 1]")
        grey = (grey.double() * 255).round().to(torch.uint8)
    if binarization != "dynamic":
        return (grey > 127).float()
    levels = grey.reshape(-1, shape[-1] if grey.dim() else 1).cpu().numpy()  # (B, D)
    keys = np.array(
        [
            int.from_bytes(
                hashlib.blake2b(row.tobytes(), digest_size=8, key=str(seed).encode()).digest(), "little"
            )
            for row in levels
        ],
        dtype=np.uint64,
    )  # (B,) one key per image, from its levels
    # SplitMix64's own stream from state `key`: output i mixes key + (i + 1) * gamma.
    counters = np.arange(levels.shape[1], dtype=np.uint64) * _GOLDEN_GAMMA  # (D,)
    on = np.empty(levels.shape, dtype=bool)
    for start in range(0, len(levels), SCORING_CHUNK_IMAGES):  # bounds the (chunk, D) uint64 temporaries
        rows = slice(start, start + SCORING_CHUNK_IMAGES)
        noise = _splitmix64(keys[rows, None] + counters[None, :])  # (chunk, D) uniform 64-bit words
        # thresholds uniform on {0..254}: P(level > r) = level/255, exactly 0 and 1 at the ends
        thresholds = ((noise >> np.uint64(32)) * np.uint64(255)) >> np.uint64(32)
        on[rows] = levels[rows] > thresholds
    return torch.from_numpy(on).float().reshape(shape).to(device)


def require_binary(binary: torch.Tensor, who: str) -> None:
    """Refuse grey levels where a function scores binary pixels (the likelihood is Bernoulli)."""
    if not bool(((binary == 0) | (binary == 1)).all()):
        raise ValueError(
            f"{who} scores binary pixels: pass the digit's scoring image (0/1), e.g. "
            "vae_core.data.scoring_binary(grey) or DigitImages.fixed_binary(), not grey levels"
        )


def pool_to_14(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """28x28 grey levels (N, 784) to 14x14 (N, 196) by 2x2 average pooling, rounded to uint8."""
    grey = torch.as_tensor(pixels).float().view(-1, 1, 28, 28)
    return F.avg_pool2d(grey, 2).round().to(torch.uint8).view(-1, 14 * 14)
