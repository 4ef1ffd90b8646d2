"""Thin-Plate Spline Motion Model for Image Animation (Zhao & Zhang, CVPR 2022).

>>> from tpsmm import TPSMM, load_config
>>> model = TPSMM.from_checkpoint("vox.pth.tar", config="vox-256")
"""

from tpsmm.animation import Animator, animate
from tpsmm.config import Config, load_config
from tpsmm.model import TPSMM

__all__ = ["TPSMM", "Animator", "Config", "animate", "load_config"]
