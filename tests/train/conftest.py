"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from helpers.stores import FakeStore, make_store


@pytest.fixture
def store() -> FakeStore:
    return make_store()
