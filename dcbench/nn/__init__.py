"""Networks (the reference ConvNet family and the other evaluation architectures) and the
differentiable augmentations (DSA, the DC paper's MNIST augmentation)."""
