"""Training: the state and the jitted steps (`steps`, compiled with `compiler`'s XLA
options), the epoch loop with resume (`trainer`; its batches from `batch_sources`, its
numerical faults as one line by `faults`), checkpoints of any pytree (`checkpoints`), the
workdir's files and lock (`workdir`, `metric_writer`, `lock`), a run's memory bound
(`memory`) and data parallelism over devices and processes (`parallel`)."""
