"""Deploying a model: ONNX graphs (:mod:`~tpsmm.deploy.onnx_export`) and the engines that
run them, or torch, for the Animator (:mod:`~tpsmm.deploy.engines`)."""
