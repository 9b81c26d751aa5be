"""The user's whole path on a representative subset of the coverage sweep (benchmarks/coverage.py):
wrap → fit with PruningCallback → compact (≡ masked) → to_tflite (≡ Keras), params and MACs drop."""

from __future__ import annotations

import os
import sys

import keras
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
sys.path.insert(0, os.path.join(HERE, "..", "graph"))

import coverage  # noqa: E402
from _coverage_models import HAND_BUILT  # noqa: E402


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_hand_built_models_pass_the_user_path(name):
    row = coverage.check_user_path(HAND_BUILT[name](), steps=3)
    assert coverage.problems(row) == [], row
    assert row["prunable"] >= 1


@pytest.mark.slow
def test_mobilenet_v3_small_with_keras_ops_nodes_passes_the_user_path():
    # hard-swish and squeeze-excite are keras.ops nodes (x + 3, x * y) in its graph
    row = coverage.check_user_path(coverage.build("MobileNetV3Small"), steps=2)
    assert coverage.problems(row) == [], row
    assert row["macs"][1] < 0.7 * row["macs"][0]


def test_application_list_is_enumerated_from_keras():
    names = coverage.application_names()
    assert {"MobileNetV3Small", "ConvNeXtTiny", "ResNet50", "EfficientNetB0"} <= set(names)
    assert all(callable(getattr(keras.applications, n)) for n in names)
