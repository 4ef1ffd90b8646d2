"""Procedural videos of articulated cartoon characters with ground-truth landmarks.

Each video shows one character (torso, head with a face, two arms with elbows and
hands, two legs with knees and feet) moving its joints along smooth random
trajectories (sums of sinusoids) over a procedurally textured background, filmed by
a camera that shifts and zooms a little. Characters differ in proportions, colours
and garment textures; the textures are painted in the parts' own coordinates, so
they move with the limbs and a motion model has something to track.

Ten landmarks carry small discs in reserved, fully saturated colours
(:data:`MARKER_COLOURS`). Every other colour in a frame has a chroma
(max - min of R, G, B) of at most :data:`MAX_TEXTURE_CHROMA`; because compositing,
antialiasing and camera resampling only mix colours, and chroma is a seminorm, no
pixel away from a marker can exceed it, so markers can be found by colour alone
(see :mod:`tpsmm.evaluation.landmarks`).

Conventions: pixel (row i, column j) has its centre at (x, y) = (j, i); keypoints
are float32 (x, y) in those units and may lie outside the frame. "left" and "right"
are the image's left and right. A marker is ``visible`` when at least
:data:`VISIBLE_FRACTION` of its disc is unoccluded and inside the frame (one arm is
drawn behind the torso and head, so its markers disappear at times).

On disk (the layout the trainer reads)::

    ROOT/synthetic.json              generation settings and marker names/colours
    ROOT/{train,test}/<id>#<clip>/000000.png, 000001.png, ...   lossless RGB frames
    ROOT/{train,test}/<id>#<clip>.npz   keypoints (T, M, 2) float32, visible (T, M) bool

``<id>`` names the character (``id00012``); clips of one character share it, which
is the FOMM ``id_sampling`` convention. Test characters never appear in train.
Everything is a function of (seed, identity, clip): the same seed gives the same
frames byte for byte, whatever the number of workers.
"""

from tpsmm.data.synthetic.dataset import DatasetSummary, generate_dataset, video_name
from tpsmm.data.synthetic.markers import (
    MARKER_COLOURS,
    MARKER_HUES,
    MARKER_NAMES,
    MARKER_RADIUS,
    MAX_TEXTURE_CHROMA,
    VISIBLE_FRACTION,
)
from tpsmm.data.synthetic.render import Video, clip_scene, render_video

__all__ = [
    "MARKER_COLOURS", "MARKER_HUES", "MARKER_NAMES", "MARKER_RADIUS", "MAX_TEXTURE_CHROMA",
    "VISIBLE_FRACTION",
    "DatasetSummary", "Video", "clip_scene", "generate_dataset", "render_video", "video_name",
]
