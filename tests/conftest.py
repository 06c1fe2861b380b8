"""Shared fixtures of the C++-path tests (test_resnet, test_node, test_bad_input, test_threads,
test_activations).

Helpers live in each test module (``--import-mode=importlib`` makes conftest helpers awkward to
import); here only what must wrap every test.
"""

import pytest
import resode


@pytest.fixture(autouse=True)
def _restore_num_threads():
    """No test may leak a changed core thread count into the next one."""
    before = resode.get_num_threads()
    yield
    resode.set_num_threads(before)
