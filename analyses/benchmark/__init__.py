"""Benchmarks: every number is a ratio against the natural floor, measured in the same run.

    python analyses/benchmark train      # training throughput vs a hand-written nn.LSTM loop
    python analyses/benchmark record     # recording h and c vs the fused nn.LSTM forward
    python analyses/benchmark features   # labelling all features vs recording the same text
    python analyses/benchmark probe      # the ranking pass vs the fused forward
    python analyses/benchmark headline   # `neuroscope probe` / `record` as whole processes vs the fused forward
    python analyses/benchmark match      # match vs recording the same text; peak memory at 10M chars
    python analyses/benchmark explain    # explaining all 3,072 units vs the fused forward
    python analyses/benchmark causes     # a patch and a window's occlusions vs the fused forward
    python analyses/benchmark imports    # `import neuroscope` and `ns.probe` as fresh processes vs `python -c pass`
    python analyses/benchmark floor ...  # the fused forward alone (headline runs it in a fresh process)

Each prints a few lines of results and, with --json, one JSON object. Timings are medians of
repeats on whatever machine runs them; they are never asserted in tests. headline and imports take
--tree (repeatable) to run another checkout's neuroscope in the same run, for before/after numbers.

The layout: timing (what every benchmark shares: medians, memory, fresh processes, the fused floor),
one module per benchmark whose run() returns a dict and prints nothing, printer (the text lines),
cli (the options).
"""
