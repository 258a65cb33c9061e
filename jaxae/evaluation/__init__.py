"""Evaluation: metrics over splits (`metrics`), the IWAE bound (`iwae`), generation
(`generation`), pictures (`pictures`, `plots`), probes and PCA (`probe`, `pca`), and the
evaluation of a trained workdir (`evaluate`). Import the submodule you need: only `pictures`,
`plots` and `evaluate` load matplotlib."""
