"""What both the tests and the benchmarks use, and the product does not.

- :mod:`~tpsmm.testing.golden`: the rule that rebuilds the reference's golden weights.
- :mod:`~tpsmm.testing.reference_loop`: the reference demo's per-frame animation loop, the
  baseline the fast path is checked and timed against.
- :mod:`~tpsmm.testing.camera_truth`: the true background motion of a synthetic clip.
"""
