"""Colour preservation for style transfer: luminance-only transfer (YIQ) and colour-statistics matching."""

from __future__ import annotations

import numpy as np

__all__ = ["match_color_statistics", "preserve_luminance"]


_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    np.float32,
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def preserve_luminance(stylised: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Keeps the luminance (Y of YIQ) of `stylised` and the chroma (I, Q) of `content`, `[H, W, 3]` 0..255.

    This is Gatys et al.'s "luminance-only transfer" as neural-style's `-original_colors 1` applies it:
    after the optimisation, so the loss is unchanged.
    """
    y = (np.asarray(stylised, np.float32) @ _RGB_TO_YIQ.T)[..., :1]
    iq = (np.asarray(content, np.float32) @ _RGB_TO_YIQ.T)[..., 1:]
    return np.clip(np.concatenate([y, iq], axis=-1) @ _YIQ_TO_RGB.T, 0.0, 255.0)


def match_color_statistics(
    source: np.ndarray, reference: np.ndarray, eps: float = 1e-5
) -> np.ndarray:
    """Affinely recolours `source` so its RGB mean and covariance equal `reference`'s (`[H, W, 3]`, 0..255).

    x ↦ Σ_r^{1/2} Σ_s^{-1/2} (x − μ_s) + μ_r with symmetric square roots: Gatys et al.'s colour-histogram
    matching, used on the style images so the transferred texture comes in the content's colours.
    """

    def stats(img):
        flat = np.asarray(img, np.float64).reshape(-1, 3)
        mean = flat.mean(axis=0)
        return flat, mean, np.cov(flat - mean, rowvar=False) + eps * np.eye(3)

    def sqrtm(cov, power):
        vals, vecs = np.linalg.eigh(cov)
        return (vecs * np.maximum(vals, eps) ** power) @ vecs.T

    flat, mu_s, cov_s = stats(source)
    _, mu_r, cov_r = stats(reference)
    transform = sqrtm(cov_r, 0.5) @ sqrtm(cov_s, -0.5)
    out = (flat - mu_s) @ transform.T + mu_r
    return np.clip(out, 0.0, 255.0).reshape(np.shape(source)).astype(np.float32)
