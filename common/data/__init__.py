"""Where training and evaluation data come from and how they are placed: TFDS and generated
datasets, splits on the devices, streamed from host memory or read from disk, one interface."""
