"""Animation: a source image driven by a video (the ``tpsmm animate`` command).

>>> from tpsmm.animation import Animator
>>> animator = Animator.from_checkpoint("vox.pth.tar", config="vox-256")
>>> animator.animate("face.png", "speech.mp4", "out.mp4")
"""

from tpsmm.animation.animator import (
    MODES,
    AnimationResult,
    Animator,
    PreparedSource,
    animate,
)

__all__ = ["MODES", "AnimationResult", "Animator", "PreparedSource", "animate"]
