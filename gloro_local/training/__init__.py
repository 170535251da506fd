"""Losses, metrics, schedules and the per-sample iterate store."""
from gloro_local.training.callbacks import (BetaSchedule, ConvergeGlobalNorms, Delayed,
                                            EpsilonSchedule, KappaSchedule, LambdaSchedule,
                                            LearningRateSchedule, StepDecay)
from gloro_local.training.iterate_store import IterateStore
from gloro_local.training.losses import (LOSSES, BCPLoss, GloroCrossEntropy, RobustLoss,
                                         Trades, get_loss)
from gloro_local.training.metrics import RobustMetrics, certified
from gloro_local.training.nonfinite_guard import NonFiniteLossGuard
from gloro_local.training.user_metrics import user_metrics
from gloro_local.training.worker_backup import WorkerBackupAndRestore
from gloro_local.training.worker_shard import worker_shard

__all__ = ["BCPLoss", "BetaSchedule", "ConvergeGlobalNorms", "Delayed", "EpsilonSchedule",
           "GloroCrossEntropy", "IterateStore", "KappaSchedule", "LOSSES", "LambdaSchedule", "LearningRateSchedule",
           "NonFiniteLossGuard", "RobustLoss", "RobustMetrics", "StepDecay", "Trades", "certified",
           "WorkerBackupAndRestore", "get_loss", "user_metrics", "worker_shard"]
