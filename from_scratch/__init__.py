"""A neural network in NumPy alone, in matrix form: whole batches, no per-sample loops.

Read it in this order: activations.py (f and f'), losses.py (L and dL/dP), layers.py (Dense forward and
backward), conv.py and pooling.py (convolution and pooling through im2col), recurrent.py (SimpleRNN, LSTM, GRU,
Embedding: backpropagation through time), sequence.py (GlobalAveragePooling1D, PositionEmbedding), model.py
(Sequential: the chain rule across layers), merge.py and graph.py (Model: graphs, where gradients that meet add up;
backprop.py its backward pass), gradcheck.py (the numerical witness).
"""

from from_scratch.activation_layers import ReLU
from from_scratch.activations import ACTIVATIONS
from from_scratch.arch import Architecture, LayerSpec
from from_scratch.attention import MultiHeadAttention
from from_scratch.conv import Conv2D, Flatten, Reshape
from from_scratch.errors import BadInputError
from from_scratch.gradcheck import gradcheck, numerical_gradient
from from_scratch.graph import Input, Model
from from_scratch.graph_arch import Call, GraphArchitecture
from from_scratch.layers import LAYERS, Dense, Dropout, Layer
from from_scratch.losses import LOSSES, get_loss
from from_scratch.merge import MERGE_LAYERS, Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from from_scratch.model import Sequential
from from_scratch.normalization import BatchNormalization, LayerNormalization
from from_scratch.optimizers import OPTIMIZERS, get_optimizer
from from_scratch.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from from_scratch.recurrent import GRU, LSTM, SEQUENCE_LAYERS, Embedding, SimpleRNN
from from_scratch.sequence import ENCODER_LAYERS, GlobalAveragePooling1D, PositionEmbedding
from from_scratch.spatial import DepthwiseConv2D, ZeroPadding2D

__all__ = [
    "Add",
    "Average",
    "Call",
    "Concatenate",
    "Dot",
    "GraphArchitecture",
    "Input",
    "MERGE_LAYERS",
    "Maximum",
    "Minimum",
    "Model",
    "Multiply",
    "MultiHeadAttention",
    "Subtract",
    "ACTIVATIONS",
    "LAYERS",
    "LOSSES",
    "Architecture",
    "BadInputError",
    "AveragePooling2D",
    "BatchNormalization",
    "Conv2D",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "MaxPooling2D",
    "Reshape",
    "Dense",
    "DepthwiseConv2D",
    "ReLU",
    "ZeroPadding2D",
    "Dropout",
    "Embedding",
    "ENCODER_LAYERS",
    "PositionEmbedding",
    "GRU",
    "LSTM",
    "SEQUENCE_LAYERS",
    "SimpleRNN",
    "Layer",
    "LayerNormalization",
    "LayerSpec",
    "Sequential",
    "OPTIMIZERS",
    "get_loss",
    "get_optimizer",
    "gradcheck",
    "numerical_gradient",
]
