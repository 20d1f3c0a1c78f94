"""Data: readers per format (iam, rimes, folder, xml_lines for ALTO / PAGE XML, synthetic) -> LineSample
lists -> one LineDataset -> ``collate`` batches; image loading/preprocessing (images), training
augmentation (augment) and the LightningDataModules (datamodule).

Names are imported lazily: inference needs ``htr.data.images`` only, and must not pay for Lightning,
albumentations and the font renderer at start-up.
"""
from importlib import import_module

_EXPORTS = {
    "AugmentConfig": "augment", "Augmenter": "augment",
    "LineDataModule": "datamodule", "SyntheticDataModule": "datamodule", "FolderDataModule": "datamodule",
    "FolderMixDataModule": "datamodule", "FolderSource": "folder", "WeightedMix": "mixing",
    "IAMDataModule": "datamodule", "RIMESDataModule": "datamodule", "XMLDataModule": "datamodule",
    "LineDataset": "dataset", "LineSample": "dataset", "prepare_samples": "dataset",
    "PreprocessConfig": "images", "collate": "images", "load_image": "images", "preprocess": "images",
    "SyntheticConfig": "synthetic", "SyntheticLineDataset": "synthetic",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"htr.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'htr.data' has no attribute {name!r}")
