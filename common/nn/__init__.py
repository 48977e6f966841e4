"""Building blocks of models: layers, fast CPU kernels, the RNG lowering, optimizers."""
