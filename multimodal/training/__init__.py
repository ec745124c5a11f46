"""Training: one loop (``Trainer``) configured by ``TrainConfig``, for every model in the suite.

``config`` (TrainConfig and its flags), ``batching`` (the data of each step), ``trainer`` (the loop),
``runs`` (run and model folders, model cards), ``distributed`` (torchrun); one recipe per model:
``vit``, ``autoencoder``, ``text2image``, ``whisper``, ``vqvae``, ``text2codes``, ``speech_codec``, ``lora``.
"""

from .batching import split_batch
from .config import TrainConfig, add_train_args, train_config_from_args
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "add_train_args", "split_batch", "train_config_from_args"]
