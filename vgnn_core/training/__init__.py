"""Training and judging the models: the Petretto and phonondb data, losses, metrics,
evaluation, the resumable trainer and shipping a run with its model card."""

from .evaluation import evaluate
from .samples import PhononSample
from .train import TrainConfig, train

__all__ = ["PhononSample", "TrainConfig", "evaluate", "train"]
