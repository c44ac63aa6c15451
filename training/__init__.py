"""Training module (TensorFlow/Keras, installed with the ``train`` extra). See ``python -m training --help``."""
