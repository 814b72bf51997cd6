"""What a paper's input pipeline is, as data: the `Preprocess` record.

Imports neither TensorFlow nor Keras, so that the recipes (and their `--help`)
can state their pipelines without loading either.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """One paper's preprocessing; sizes in pixels.

    resize: shorter side after resizing; a (low, high) pair draws it at random
        per training image (ResNet's scale augmentation); evaluation uses low.
    center: centre square kept after resizing (AlexNet/ZFNet's 256x256), or None.
    crop: training crop (random) and evaluation crop (centre).
    pad: zero padding before the random crop (CIFAR's 4).
    flip: random horizontal flips.
    pca: std of AlexNet's PCA colour noise alpha (0.1), or 0.
    mean: "pixel" (the mean image of the `center` squares) or "channel" (the
        mean colour; used whenever images differ in size).
    """

    resize: object
    crop: int
    center: int = None
    pad: int = 0
    flip: bool = True
    pca: float = 0.0
    mean: str = "pixel"

    @property
    def pixel_mean(self):
        """A mean image needs images of one size: a fixed resize and a centre square."""
        return self.mean == "pixel" and self.center is not None and not isinstance(self.resize, tuple)

    def scaled(self, crop):
        """The same pipeline for a smaller model input (demo and smoke runs)."""
        ratio = crop / self.crop
        resize = tuple(max(crop, round(r * ratio)) for r in self.resize) if isinstance(
            self.resize, tuple) else max(crop, round(self.resize * ratio))
        center = None if self.center is None else max(crop, round(self.center * ratio))
        return dataclasses.replace(self, resize=resize, crop=crop, center=center,
                                   pad=round(self.pad * ratio))
