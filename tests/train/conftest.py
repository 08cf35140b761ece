"""Fixtures of the training tests."""

from __future__ import annotations

import pytest
from train_fakes import FakeStore, make_store


@pytest.fixture
def store() -> FakeStore:
    return make_store()
