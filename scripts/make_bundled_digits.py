"""Write vae_core/digits/mnist_sample.npz.xz: the MNIST digits the app ships for offline use.

    python scripts/make_bundled_digits.py /path/to/mnist   # the folder with the four IDX files

The test part is every other MNIST test digit (indices 0, 2, ..., 9,998): MNIST's first and last
5,000 test digits come from different groups of writers and score differently (mlp2d's ELBO: -143.78
and -140.45), so taking both halves keeps the sample's scores close to the full test set's (-141.63
against -142.11). The training part is the first
5,000 training digits, for the Train page's quick runs. An uncompressed .npz inside xz: xz makes
it ~1.4 MB where np.savez_compressed (zlib) makes ~1.6 MB, and the stdlib's lzma reads it.
"""

from __future__ import annotations

import io
import lzma
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vae_core.mnist import BUNDLED_DIGITS, BUNDLED_TEST_STRIDE, BUNDLED_TRAIN_COUNT, _read_idx_split  # noqa: E402


def main(data_dir: str) -> None:
    test_images, test_labels = _read_idx_split(Path(data_dir), "test")
    train_images, train_labels = _read_idx_split(Path(data_dir), "train")
    test_index = np.arange(0, len(test_images), BUNDLED_TEST_STRIDE, dtype=np.uint16)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        test_images=test_images[test_index],
        test_labels=test_labels[test_index],
        test_index=test_index,
        train_images=train_images[:BUNDLED_TRAIN_COUNT],
        train_labels=train_labels[:BUNDLED_TRAIN_COUNT],
    )
    BUNDLED_DIGITS.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    print(f"{BUNDLED_DIGITS}: {BUNDLED_DIGITS.stat().st_size:,} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
