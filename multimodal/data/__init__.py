"""Dataset adapters: image folders and Fashion-MNIST (``images``), and the image-classification
training and evaluation built on them (``image_classification``)."""

from .images import (FASHION_MNIST_LABELS, ImageFolderDataset, ImageTensorDataset, TrainAugment, image_to_tensor,
                     load_fashion_mnist, load_image, normalize, preprocess, read_idx)

__all__ = ["FASHION_MNIST_LABELS", "ImageFolderDataset", "ImageTensorDataset", "TrainAugment", "image_to_tensor",
           "load_fashion_mnist", "load_image", "normalize", "preprocess", "read_idx"]
