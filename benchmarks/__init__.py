"""Benchmark suite: is the NumPy network fast where it counts?

Run by hand from the repository root (never from the test suite):

    .venv/bin/python -m benchmarks                 # full run, about 4-5 minutes on 2 cores
    .venv/bin/python -m benchmarks --quick         # smoke run, about a minute
    .venv/bin/python -m benchmarks --sections 1,5  # some sections only

(`.venv/bin/python benchmarks/bench.py ...`, the former command, still works: it runs the above.)

Nine measurements in one run, each the median of several timed calls after a warm-up (`time.perf_counter`), most of
them reported as ratios:

1. scratch gradient step (`Sequential.loss_and_gradients`) and train step (+ in-place SGD) against the Keras twin's
   `tf.function`-compiled GradientTape step (+ `SGD.apply_gradients`), 784-256-128-10, float32/float64, batch
   32/128/1024, in one process with the same weights;
2. the scratch step against its arithmetic bound (matmul FLOPs / measured 1024x1024 matmul throughput);
3. end to end: wall time and peak RSS of `python -m compare compare` and of `python -c "import tensorflow"`;
4. scaling of the scratch step with width and batch, next to the FLOP count;
5. the thread-pool question: the scratch step without TensorFlow in the process, and with TensorFlow imported and a
   Keras step run, under several thread settings (each in its own child process), plus the scratch and Keras
   steps while a neighbour process competes for the cores;
6. the convolution training step (28x28x1 and 8x8x1 CNNs, batch 64, float32/float64) against Keras's fastest
   configuration (tf.function with and without jit_compile, oneDNN and op determinism on and off, each in its own
   child process) and against its GEMM bound, with where its time goes (im2col, GEMM, col2im, pooling);
7. the LSTM training step (`TxF-lstmU-10`, T 8/32, u 64/256, batch 64, float32/float64) against Keras's fastest
   configuration (section 6's settings, each in its own child process), with where its time goes (forward loop,
   backward loop, weight-gradient products).
8. graph vs chain: the train step of a residual MLP and of a residual CNN block built with from_scratch.graph
   against the Sequential of the same layers without the skip (target <= 1.1x), with the graph's extra nodes alone,
   and against Keras's fastest configuration of the same functional model (section 6's child processes);
9. the attention training step (self-attention, T 64, D 64, 4 heads, batch 32, float32/float64) against Keras's
   fastest configuration of the same functional model (section 6's child processes), with where its time goes (the
   attention layer's projections, scores, softmax and their backward).

The machine may be shared: every measurement also records how many cores' worth of CPU *other* processes used
meanwhile (from /proc/stat minus this process's own CPU time), retries a disturbed measurement after waiting for
the machine to go idle (full run only, at most --patience seconds in all), and reports that "other load" next to
the numbers.

Progress and TensorFlow's log lines go to stderr; the report (text tables, then the same tables as Markdown for
benchmarks/README.md) to stdout. Child processes get the environment this run started with.

Modules, in reading order:

- `__main__`: the entry point: options, which sections run in which order, the report;
- `config`: the workload (architecture, batches, dtypes, target) and the environment the run started with;
- `timing`: budgets, per-call timings, the other-load meter, the idle guard that retries disturbed measurements;
- `machine`: CPU, cores, BLAS, versions, GEMM probe: the report's first and last lines;
- `steps`: the timed work: batches, scratch and Keras steps, FLOP counts, bare matmuls;
- `children`: child processes with their wall time and peak RSS;
- `section_vs_keras`, `section_bound`, `section_end_to_end`, `section_scaling`, `section_threads`, `section_conv`,
  `section_lstm`, `section_graph`, `section_attention`: sections 1-9;
- `report`: progress lines, table cells, and the sections as text tables and Markdown.
"""
