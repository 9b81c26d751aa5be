"""Shared by the CLI tests: a tiny LeNet-5 filter-pruning recipe on the offline Fashion-MNIST."""

import pytest

TINY_FILTER = """
name: tiny_filter
seed: 0
model: {name: lenet5}
data: {name: fashion_mnist, batch_size: 64, take: 256, test_take: 128}
train: {epochs: 2, optimizer: {name: adam, learning_rate: 0.001}}
prune:
  criterion: l1
  granularity: filter
  config_list:
    - {op_types: [Conv2D, Dense], sparsity: 0.5}
    - {op_names: [predictions], exclude: true}
finetune: {epochs: 2, optimizer: {name: adam, learning_rate: 0.0005}}
export: {quantize: none, benchmark: {threads: [1], runs: 5, warmup: 1}}
"""


@pytest.fixture
def tiny_recipe(recipe_file):
    """``TINY_FILTER`` written to ``tmp_path / "tiny.yaml"``; skips without the offline data."""
    return recipe_file(TINY_FILTER, "tiny.yaml")
