"""Losses, metrics, schedules and the per-sample iterate store."""
from gloro_local.training.callbacks import (ConvergeGlobalNorms, EpsilonSchedule,
                                            LambdaSchedule, LearningRateSchedule)
from gloro_local.training.iterate_store import IterateStore
from gloro_local.training.losses import (LOSSES, BCPLoss, GloroCrossEntropy, RobustLoss,
                                         Trades, get_loss)
from gloro_local.training.metrics import RobustMetrics, certified

__all__ = ["BCPLoss", "ConvergeGlobalNorms", "EpsilonSchedule", "GloroCrossEntropy",
           "IterateStore", "LOSSES", "LambdaSchedule", "LearningRateSchedule",
           "RobustLoss", "RobustMetrics", "Trades", "certified", "get_loss"]
