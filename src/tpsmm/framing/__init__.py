"""Real photos and videos: find the subject, crop it as the training data were cropped,
follow it through a video in tubes, and paste the animated crop back.

- :mod:`~tpsmm.framing.boxes`: subject boxes and the training data's crop geometry;
- :mod:`~tpsmm.framing.detectors`: face / body / upper-body detectors and a manual box;
- :mod:`~tpsmm.framing.tubes`: a video's frames grouped into tubes (one crop each);
- :mod:`~tpsmm.framing.paste_back`: the animated crop blended back into the full frame.
"""

from tpsmm.framing.boxes import Rect, crop_window
from tpsmm.framing.detectors import SUBJECTS, Detection, Detector, make_detector
from tpsmm.framing.paste_back import PasteBack
from tpsmm.framing.tubes import Tube, find_tubes

__all__ = ["SUBJECTS", "Detection", "Detector", "PasteBack", "Rect", "Tube", "crop_window",
           "find_tubes", "make_detector"]
