"""Training engine: optimizer and lr schedule, reproducible data order, checkpoints, logging, DDP."""
from ..checkpoint.training import last_checkpoint, load_checkpoint, save_checkpoint
from .distributed import (
                          all_gather,
                          all_reduce_mean,
                          get_local_rank,
                          get_rank,
                          get_world_size,
                          is_main_process,
                          launch,
                          synchronize,
)
from .events import EventWriter
from .sampler import EpochBatchSampler, TrainLoader, seed_all
from .schedule import build_lr_scheduler, build_optimizer, lr_factor
from .trainer import Trainer

__all__ = [
    "Trainer",
    "build_optimizer",
    "build_lr_scheduler",
    "lr_factor",
    "seed_all",
    "TrainLoader",
    "EpochBatchSampler",
    "EventWriter",
    "save_checkpoint",
    "last_checkpoint",
    "load_checkpoint",
    "launch",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "is_main_process",
    "synchronize",
    "all_gather",
    "all_reduce_mean",
]
