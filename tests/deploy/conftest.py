"""Fixtures of the deploy checks: fc3's schema and the pinned Serverless Devs CLI, each or a skip saying why."""
from __future__ import annotations

import pytest

from tests.deploy import template_check as tc


@pytest.fixture(scope="session")
def schema():
    """fc3's schema, or None: then only what needs the schema is skipped, the other checks still run."""
    return tc.load_schema()


@pytest.fixture(scope="session")
def s_binary():
    try:
        binary = tc.s_binary()
    except tc.SUnavailable as exc:  # offline: npm is there but cannot reach its registry
        pytest.skip(f"the Serverless Devs CLI part is skipped (the Python renderer covers the rest): {exc}")
    if binary is None:
        pytest.skip("npm is not installed: the Serverless Devs CLI part is skipped "
                    "(the Python renderer covers the rest)")
    return binary
