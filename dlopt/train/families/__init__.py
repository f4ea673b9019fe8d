"""The task families; importing this package registers each one."""

from dlopt.train.families import (autoencoder, classification, dqn, gan, perceptron, regression,  # noqa: F401
                                  seq2seq, vae)
