"""Datasets and the builders of the offline corpora: image folders and Fashion-MNIST (``images``),
the captioned world (``world``), spoken digits (``speech_digits``) and the speech evaluation set
(``speech_eval``)."""

from .images import (FASHION_MNIST_LABELS, ImageFolderDataset, ImageTensorDataset, TrainAugment, load_fashion_mnist,
                     read_idx)

__all__ = ["FASHION_MNIST_LABELS", "ImageFolderDataset", "ImageTensorDataset", "TrainAugment", "load_fashion_mnist",
           "read_idx"]
