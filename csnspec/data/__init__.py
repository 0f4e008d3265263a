"""Video data for training and evaluation: synthetic motion videos, dataset indexes, PyAV decoding,
clip sampling and the spatial pipeline of the paper's section 4.1.

Nothing here imports torch or jax: both training loops read the same numpy clips.
"""
