"""Training: stage 1 (:func:`train`) and the AVD stage (:func:`train_avd`).

>>> from tpsmm.training import TrainOptions, train
>>> result = train(TrainOptions(out="runs/vox", config="vox-256", data="data/vox"))
>>> result.status, result.step, result.checkpoint
"""

from tpsmm.training.avd import AVDOptions, train_avd
from tpsmm.training.loop import RunOptions, TrainResult
from tpsmm.training.trainer import Stage1, TrainOptions, train

__all__ = ["AVDOptions", "RunOptions", "Stage1", "TrainOptions", "TrainResult", "train",
           "train_avd"]
