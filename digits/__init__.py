"""Domain library: MNIST data, models, training, metrics and plots."""
