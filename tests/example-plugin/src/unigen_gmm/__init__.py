"""An example third-party unigen family: a Gaussian mixture model trained by gradient descent."""
