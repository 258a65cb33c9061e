"""Kernels written for speed, injected into the models as layer fields (`conv=`, `dense=`):
convolutions as matmuls (`conv`), pooling as elementwise passes (`pooling`) and bfloat16
matmuls with float32 accumulation (`precision`); `fence` keeps a value XLA's CPU fusion
would recompute in each of its readers in memory."""
