"""Real datasets: the :class:`~dcbench.data.real.RealDataset` type, the built-in torchvision-layout
readers, datasets given as a path (image folders, tensor files), the one on-disk cache and the
safe loaders for untrusted files."""
