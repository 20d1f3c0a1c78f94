"""Data: readers per format (iam, rimes, folder, synthetic) -> LineSample lists -> one LineDataset ->
``collate`` batches; image loading/preprocessing (images), training augmentation (augment) and the
LightningDataModules (datamodule)."""
from htr.data.augment import AugmentConfig, Augmenter
from htr.data.datamodule import (FolderDataModule, IAMDataModule, LineDataModule, RIMESDataModule,
                                 SyntheticDataModule)
from htr.data.dataset import LineDataset, LineSample, prepare_samples
from htr.data.images import PreprocessConfig, collate, load_image, preprocess
from htr.data.synthetic import SyntheticConfig, SyntheticLineDataset

__all__ = ["AugmentConfig", "Augmenter", "LineDataModule", "SyntheticDataModule", "FolderDataModule",
           "IAMDataModule", "RIMESDataModule", "LineDataset", "LineSample", "prepare_samples",
           "PreprocessConfig", "collate", "load_image", "preprocess", "SyntheticConfig", "SyntheticLineDataset"]
