"""Training: the state and the jitted steps (`steps`), the epoch loop with resume
(`trainer`), checkpoints of any pytree (`checkpoints`), the workdir's files (`workdir`,
`metric_writer`) and data parallelism over devices and processes (`parallel`)."""
