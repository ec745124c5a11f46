"""Training: one loop (``Trainer``) configured by ``TrainConfig``, for every model in the suite."""

from .trainer import TrainConfig, Trainer, add_train_args, split_batch, train_config_from_args

__all__ = ["TrainConfig", "Trainer", "add_train_args", "split_batch", "train_config_from_args"]
