"""Training-time augmentation of grayscale line images (albumentations), never used for val/test.

Works on the uint8 (H, W) image, dark ink on light paper, before ``preprocess`` normalises it. The
line is first padded with white so that shear, rotation and distortions move ink into the margin
instead of out of the frame, and the affine step uses ``fit_output`` so its output holds the whole
input: ink is never cropped. White fill is harmless on grey paper: ``preprocess`` maps everything
lighter than the paper level to background.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import
import albumentations as A  # noqa: E402


@dataclass
class AugmentConfig:
    """Probabilities and strengths of each augmentation (probability 0 switches one off).

    Args:
        enabled: the master switch: false leaves the images as they are (as the data modules'
            ``augment: false`` does).
        pad: white margin added on every side before the geometric steps, as a fraction of the line's
            height (room for shear and rotation, so ink is never cropped).
        p_affine: probability of the affine step: slant (shear), small rotation and scale.
        shear_deg: horizontal shear range +-, degrees: imitates writers' slant.
        rotate_deg: rotation range +-, degrees: lines are already roughly horizontal.
        scale: isotropic scale jitter +-, as a fraction (relative to the padded line).
        p_distort: probability of an elastic or grid distortion: uneven strokes and baselines.
        p_morph: probability of an erosion or dilation: thicker or thinner pen.
        p_blur: probability of a gaussian or motion blur.
        p_noise: probability of gaussian pixel noise.
        p_contrast: probability of a brightness / contrast change of ink and paper.
    """

    enabled: bool = True
    pad: float = 0.15
    p_affine: float = 0.6
    shear_deg: float = 20.0
    rotate_deg: float = 1.5
    scale: float = 0.1
    p_distort: float = 0.3
    p_morph: float = 0.3
    p_blur: float = 0.2
    p_noise: float = 0.2
    p_contrast: float = 0.5


class Augmenter:
    """Callable uint8 (H, W) -> uint8 (H', W'); picklable, reseedable per data-loader worker."""

    def __init__(self, config: AugmentConfig | None = None, seed: int | None = None) -> None:
        self.config = c = config or AugmentConfig()
        white = 255
        self.pipeline = A.Compose([
            A.Affine(shear={"x": (-c.shear_deg, c.shear_deg), "y": (0, 0)}, rotate=(-c.rotate_deg, c.rotate_deg),
                     scale=(1 - c.scale, 1 + c.scale), fit_output=True, border_mode=cv2.BORDER_CONSTANT,
                     fill=white, p=c.p_affine),
            A.OneOf([
                A.ElasticTransform(alpha=12, sigma=5, border_mode=cv2.BORDER_CONSTANT, fill=white),
                A.GridDistortion(num_steps=6, distort_limit=(-0.15, 0.15), border_mode=cv2.BORDER_CONSTANT,
                                 fill=white),
            ], p=c.p_distort),
            # On dark-on-light images, "dilation" (a max filter) thins the ink and "erosion" thickens it.
            A.OneOf([A.Morphological(scale=(2, 3), operation="erosion"),
                     A.Morphological(scale=(2, 3), operation="dilation")], p=c.p_morph),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2)),
                     A.MotionBlur(blur_limit=(3, 5))], p=c.p_blur),
            A.GaussNoise(std_range=(0.02, 0.08), p=c.p_noise),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.3, p=c.p_contrast),
        ], seed=seed)

    def reseed(self, seed: int) -> None:
        """Give this copy its own random stream (call from a worker_init_fn with a per-worker seed)."""
        self.pipeline.set_random_seed(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if not self.config.enabled:
            return image
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(f"augment expects a uint8 (H, W) image, got {image.dtype} {image.shape}")
        m = max(2, round(self.config.pad * image.shape[0]))
        image = np.pad(image, m, constant_values=255)  # (H, W) -> (H + 2m, W + 2m): room to move ink into
        out = self.pipeline(image=image)["image"]
        return out.reshape(out.shape[0], out.shape[1])  # albumentations may add a channel axis: (H, W, 1) -> (H, W)
