"""Layers that take part in bound propagation (see ``seam.py`` for the seam)."""
from gloro_local.layers.adapters import as_seam
from gloro_local.layers.clipped_maxmin import ClippedMaxMin
from gloro_local.layers.conv2d import Conv2D
from gloro_local.layers.dense import Dense
from gloro_local.layers.flatten import Flatten
from gloro_local.layers.maxmin import MaxMin
from gloro_local.layers.relu import ReLU
from gloro_local.layers.relu_theta import ReLUTheta
from gloro_local.layers.seam import ActivationSeam, BoundState, LinearSeam, ShapeSeam

__all__ = ["ActivationSeam", "BoundState", "ClippedMaxMin", "Conv2D", "Dense", "Flatten",
           "LinearSeam", "MaxMin", "ReLU", "ReLUTheta", "ShapeSeam", "as_seam"]
