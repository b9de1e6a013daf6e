"""Regenerate bsnc/search/digits.npz from scikit-learn's copy of the UCI digits (run once by a
maintainer; scikit-learn is not a dependency of bsnc):

    pip install scikit-learn && python tests/regen_digits.py

The data: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository (1998), https://doi.org/10.24432/C50P49, licensed CC BY 4.0; scikit-learn
(BSD-3-Clause) ships the test set of it, 1,797 images of 8x8 counts 0..16."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "bsnc" / "search" / "digits.npz"


def main() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.data.astype(np.uint8).reshape(-1, 8, 8)
    labels = bunch.target.astype(np.uint8)
    assert np.array_equal(images.reshape(len(images), -1), bunch.data) and np.array_equal(labels, bunch.target)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels)
    OUT.write_bytes(buffer.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
