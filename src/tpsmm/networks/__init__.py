"""The five TPSMM networks and the VGG-19 of the perceptual loss."""

from tpsmm.networks.avd import AVDNetwork
from tpsmm.networks.bg_lucas_kanade import LucasKanadeBGMotion
from tpsmm.networks.bg_motion_predictor import BGMotionPredictor
from tpsmm.networks.dense_motion import DenseMotionNetwork
from tpsmm.networks.inpainting import InpaintingNetwork
from tpsmm.networks.keypoint_detector import KPDetector
from tpsmm.networks.vgg import Vgg19, load_vgg19

__all__ = [
    "AVDNetwork",
    "BGMotionPredictor",
    "DenseMotionNetwork",
    "InpaintingNetwork",
    "KPDetector",
    "LucasKanadeBGMotion",
    "Vgg19",
    "load_vgg19",
]
