"""The :class:`Criterion` base class."""

from __future__ import annotations

import numpy as np


class Criterion:
    """Scores units of one layer; higher = more important.

    Attributes:
        name: registry name.
        granularities: granularities it supports (``"weight"``, ``"filter"``).
        needs: what it reads: ``"weights"``, ``"activations"``, ``"gradients"``.
        global_only: True for criteria that only make sense ranked across layers.
    """

    name = None
    granularities = ("weight", "filter")
    needs = ("weights",)
    global_only = False

    def __call__(self, kernel: np.ndarray, axis: int | None = None, **stats) -> np.ndarray:
        """Scores ``kernel``: elementwise if ``axis`` is None, else one score per index of ``axis``."""
        raise NotImplementedError  # abstract

    def __repr__(self):
        return f"<criterion {self.name}>"
