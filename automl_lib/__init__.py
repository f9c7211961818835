"""automl_lib: neural architecture search by reinforcement learning, small enough
to read in an afternoon and fast enough to run on a laptop CPU.

An LSTM controller samples feed-forward classifiers ("children") for
scikit-learn's two moons; each child's validation accuracy is its reward;
REINFORCE with a moving-average baseline and an entropy bonus teaches the
controller. Start with notebook 01.
"""

__version__ = "0.1.0"
