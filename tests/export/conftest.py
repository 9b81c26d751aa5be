"""Fixtures for the export tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from export_fixtures import small_convnet


@pytest.fixture(scope="module")
def convnet():
    return small_convnet()
