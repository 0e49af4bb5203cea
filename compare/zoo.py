"""The bug zoo: classic mistakes in hand-written backprop, each a small variant of the scratch network.

Every entry builds a scenario (architecture, batch, loss or optimizer), plants one bug in the scratch side, runs
the harness against the correct Keras twin, and says where the harness should locate it (`expect`: the layer and
quantity of the first difference, or for optimizers the step at which training first parts).
`backprop-parity zoo [NAME]` prints what a user would see; tests/test_zoo.py asserts that every bug is caught and
located.

The entries live by family (compare/zoo_dense.py, zoo_optimizers.py, zoo_conv.py, zoo_rnn.py, zoo_graph.py,
zoo_attention.py, planted and run with compare/zoo_planting.py); ZOO assembles them here, and every name of theirs is
importable from here as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compare.zoo_attention import (  # noqa: F401 (re-exported: importable from here as the other families)
    attention_causal_diagonal,
    attention_heads_merged,
    attention_mask_after,
    attention_rowsum_dropped,
    attention_softmax_query,
    attention_unscaled,
)
from compare.zoo_conv import (  # noqa: F401 (re-exported: importable from here as before)
    _assigning_scatter,
    col2im_assigns,
    flatten_chw,
    kernel_dlfs_layout,
    maxpool_every_tie,
    pool_backward_assigns,
    same_padding_wrong_side,
    stride_forgotten,
)
from compare.zoo_dense import (  # noqa: F401 (re-exported: importable from here as before)
    MissingOneOverN,
    backward_mutates_input,
    bias_gradient_mean,
    dx_untransposed,
    gradients_accumulate,
    missing_1_over_n,
    relu_mask_at_kink,
    sigmoid_grad_of_output,
    softmax_batch_max,
)
from compare.zoo_graph import (  # noqa: F401 (re-exported: importable from here as the other families)
    concatenate_wrong_offset,
    fanout_overwritten,
    maximum_tie_to_both,
    multiply_missing_other,
    shared_last_call_only,
)
from compare.zoo_optimizers import (  # noqa: F401 (re-exported: importable from here as before)
    MissingBiasPower,
    MomentumWrongSign,
    SwappedBetas,
    _train,
)
from compare.zoo_planting import (  # noqa: F401 (re-exported: importable from here as before)
    _batch,
    _compare,
    _images,
    _swap_class,
)
from compare.zoo_rnn import (  # noqa: F401 (re-exported: importable from here as before)
    _lstm_step_back,
    _plant_lstm,
    _sequences,
    embedding_assigns,
    gru_reset_before,
    lstm_dc_not_carried,
    lstm_dh_not_carried,
    lstm_gate_order,
    lstm_missing_sigmoid_grad,
)


@dataclass(frozen=True)
class ZooEntry:
    """One bug: what it is, the function that runs it (returning a report), and where it must be found."""

    name: str
    description: str
    kind: str  # "gradient" (one batch through compare_models; run(dtype="float64")) or "optimizer" (a training run)
    run: Callable[..., Any]
    expect: str  # the text the diagnosis must contain, e.g. "layer 2 (dense_1) dL/dZ"


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry(
            "missing_1_over_n",
            "the loss gradient P - Y without the 1/N of the batch mean",
            "gradient",
            missing_1_over_n,
            "layer 2 (dense_1) dL/dZ",
        ),
        ZooEntry(
            "relu_mask_at_kink",
            "ReLU's derivative with the mask z >= 0 (1 at the kink, Keras has 0)",
            "gradient",
            relu_mask_at_kink,
            "layer 2 (dense_1) dL/dZ",
        ),
        ZooEntry(
            "softmax_batch_max",
            "softmax shifted by the max over the whole batch instead of each row",
            "gradient",
            softmax_batch_max,
            "layer 2 (dense_1) A",
        ),
        ZooEntry(
            "dx_untransposed",
            "dX = dZ @ W instead of dZ @ W.T (square layers hide the shape error)",
            "gradient",
            dx_untransposed,
            "layer 2 (dense_1) dL/dA",
        ),
        ZooEntry(
            "bias_gradient_mean",
            "db as the mean of dZ over the batch instead of the sum",
            "gradient",
            bias_gradient_mean,
            "layer 2 (dense_1) dL/dbias",
        ),
        ZooEntry(
            "sigmoid_grad_of_output",
            "sigmoid's derivative evaluated at A = s(Z) instead of at Z",
            "gradient",
            sigmoid_grad_of_output,
            "layer 1 (dense) dL/dZ",
        ),
        ZooEntry(
            "backward_mutates_input",
            "ReLU backward zeroing the caller's dA in place",
            "gradient",
            backward_mutates_input,
            "layer 2 (dense_1) dL/dA",
        ),
        ZooEntry(
            "gradients_accumulate",
            "dW += ... across calls, never reset",
            "gradient",
            gradients_accumulate,
            "layer 2 (dense_1) dL/dkernel",
        ),
        ZooEntry(
            "col2im_assigns",
            "col2im assigning (=) where overlapping windows must add (+=): right only when windows do not overlap",
            "gradient",
            col2im_assigns,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "pool_backward_assigns",
            "max-pool backward assigning where overlapping windows (pool 3, stride 1) must add",
            "gradient",
            pool_backward_assigns,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "kernel_dlfs_layout",
            "the kernel gradient computed in DLFS's (c_out, c_in, kh, kw) layout and reshaped, not transposed",
            "gradient",
            kernel_dlfs_layout,
            "layer 1 (conv2d) dL/dkernel",
        ),
        ZooEntry(
            "flatten_chw",
            "Flatten in (c, h, w) order, as a channels-first textbook does; Keras flattens (h, w, c)",
            "gradient",
            flatten_chw,
            "layer 2 (flatten) A",
        ),
        ZooEntry(
            "maxpool_every_tie",
            "max-pool gradient sent to every tied maximum, not to the first (digit images tie in their background)",
            "gradient",
            maxpool_every_tie,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "stride_forgotten",
            "col2im with stride 1 in the backward pass of a stride-2 convolution",
            "gradient",
            stride_forgotten,
            "layer 1 (conv2d) dL/dA",
        ),
        ZooEntry(
            "same_padding_wrong_side",
            "'same' padding with the odd cell at the top and left; Keras pads it at the bottom and right",
            "gradient",
            same_padding_wrong_side,
            "layer 1 (conv2d) Z",
        ),
        ZooEntry(
            "lstm_gate_order",
            "LSTM gate gradients stacked in deep-learning-from-scratch-2's order (f, g, i, o) into Keras's (i, f, c, o)"
            " weight layout",
            "gradient",
            lstm_gate_order,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "lstm_dh_not_carried",
            "BPTT without carrying dL/dh_t back to step t-1 (only the output's gradient reaches each step)",
            "gradient",
            lstm_dh_not_carried,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "lstm_dc_not_carried",
            "LSTM BPTT without carrying dL/dc_t back to step t-1 (two steps, c_{-1} = 0: only the gates i and c of "
            "step 0 read the lost dc)",
            "gradient",
            lstm_dc_not_carried,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "lstm_missing_sigmoid_grad",
            "the LSTM forget gate's gradient without the sigmoid derivative f (1 - f)",
            "gradient",
            lstm_missing_sigmoid_grad,
            "layer 1 (lstm) dL/dkernel",
        ),
        ZooEntry(
            "embedding_assigns",
            "Embedding gradient assigned (dE[X] = dY) where a repeated index must accumulate (np.add.at)",
            "gradient",
            embedding_assigns,
            "layer 1 (embedding) dL/dembeddings",
        ),
        ZooEntry(
            "gru_reset_before",
            "GRU with the reset gate applied before the recurrent product (reset_after=False) on Keras's default "
            "reset_after=True",
            "gradient",
            gru_reset_before,
            "layer 1 (gru) A",
        ),
        ZooEntry(
            "fanout_overwritten",
            "a fan-out's gradients overwritten (dL/dT = g) instead of summed over its consumers: a residual block's "
            "stem keeps only the branch's gradient, not the skip's",
            "gradient",
            fanout_overwritten,
            "layer 1 (stem) dL/dA",
        ),
        ZooEntry(
            "shared_last_call_only",
            "a shared layer's parameter gradient kept from one call (the last the backward runs) instead of summed "
            "over its calls (a siamese Dense)",
            "gradient",
            shared_last_call_only,
            "layer 1 (shared) dL/dkernel",
        ),
        ZooEntry(
            "concatenate_wrong_offset",
            "Concatenate's gradient split at offsets i x (the first input's width), as if every input were as wide: "
            "inputs of widths 3, 5, 4 get columns 0..2, 3..7, 6..9 where 8..11 belongs",
            "gradient",
            concatenate_wrong_offset,
            "layer 3 (middle) dL/dA",
        ),
        ZooEntry(
            "multiply_missing_other",
            "Multiply's gradient dX_i = dY, without the other input it multiplied (a gated unit)",
            "gradient",
            multiply_missing_other,
            "layer 2 (gate) dL/dA",
        ),
        ZooEntry(
            "maximum_tie_to_both",
            "Maximum's gradient sent to both inputs where they tie (a ReLU and a linear layer, both exactly 0 on a "
            "zero input row); TensorFlow sends a tie to the first input only",
            "gradient",
            maximum_tie_to_both,
            "layer 2 (linear) dL/dA",
        ),
        ZooEntry(
            "attention_unscaled",
            "the attention scores S = Q K^T without the 1/sqrt(key_dim) scaling",
            "gradient",
            attention_unscaled,
            "layer 1 (mha) every head, scores S",
        ),
        ZooEntry(
            "attention_softmax_query",
            "the attention softmax taken over the query axis (each key step's column sums to 1), forward and backward "
            "alike",
            "gradient",
            attention_softmax_query,
            "layer 1 (mha) every head, probabilities P",
        ),
        ZooEntry(
            "attention_mask_after",
            "the attention mask's large negative adder added after the softmax, to the probabilities, not to the "
            "scores",
            "gradient",
            attention_mask_after,
            "layer 1 (mha) every head, probabilities P",
        ),
        ZooEntry(
            "attention_causal_diagonal",
            "the causal mask off by one: i > j where Keras keeps i >= j, the diagonal masked",
            "gradient",
            attention_causal_diagonal,
            "layer 1 (mha) every head, probabilities P",
        ),
        ZooEntry(
            "attention_heads_merged",
            "the heads' contexts merged in (T, Hv, N) order, the head and feature axes swapped, where Keras lays "
            "them head by head",
            "gradient",
            attention_heads_merged,
            "layer 1 (mha) output A",
        ),
        ZooEntry(
            "attention_rowsum_dropped",
            "the attention softmax's backward dS = P * dP, its Jacobian's row-sum term dropped",
            "gradient",
            attention_rowsum_dropped,
            "layer 1 (mha) every head, scores dL/dS",
        ),
        ZooEntry(
            "adam_swapped_betas",
            "Adam with beta_1 and beta_2 exchanged",
            "optimizer",
            lambda: _train(SwappedBetas(learning_rate=0.01, beta_1=0.8, beta_2=0.95)),
            "step 1 ",
        ),
        ZooEntry(
            "adam_missing_bias_power",
            "Adam's bias correction without the power t (hidden by one step with beta_1 == beta_2)",
            "optimizer",
            lambda: _train(MissingBiasPower(learning_rate=0.01, beta_1=0.8, beta_2=0.95)),
            "step 2 ",
        ),
        ZooEntry(
            "momentum_wrong_sign",
            "SGD momentum applied with the wrong sign (w - m)",
            "optimizer",
            lambda: _train(MomentumWrongSign(learning_rate=0.05, momentum=0.9)),
            "step 1 ",
        ),
    ]
}


def diagnosis_text(report: Any) -> str:
    """The diagnosis line of either kind of report."""
    if hasattr(report, "rows"):
        return report.diagnosis.text if report.diagnosis else ""
    return report.diagnosis or ""
