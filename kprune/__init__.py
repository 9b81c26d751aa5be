"""kprune: pruning for Keras 3."""
