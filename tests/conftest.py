"""Shared fixtures of the C++-path tests (test_resnet, test_node, test_bad_input, test_threads,
test_activations).

Helpers live in each test module (``--import-mode=importlib`` makes conftest helpers awkward to
import); here only what must wrap every test.
"""

import os
import tempfile

import pytest
import resode

# torch.compile's inductor keeps compiled graphs in a cache shared by every process of the
# machine (/tmp/torchinductor_<user>); one compiled against an earlier build of resode's torch
# ops would be reused. Each test session compiles into a fresh cache of its own.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="resode-inductor-"))


@pytest.fixture(autouse=True)
def _restore_num_threads():
    """No test may leak a changed core thread count into the next one."""
    before = resode.get_num_threads()
    yield
    resode.set_num_threads(before)


# Under CI (the CI environment variable set) every optional test dependency is installed, and
# so is ffmpeg (.ci/run): a test or test module skipped because one failed to import, or because
# ffmpeg was not found, is a failure, never a silent skip.
_MISSING_IN_CI = ("could not import", "ffmpeg not found")


def _fail_import_skips(report) -> None:
    if os.environ.get("CI") and report.skipped:
        text = str(report.longrepr)
        if any(reason in text for reason in _MISSING_IN_CI):
            report.outcome = "failed"
            report.longrepr = f"CI: an optional test dependency is missing: {text}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_import_skips(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_import_skips(outcome.get_result())


# The examples' wall times (test_examples.py records them; no test asserts a time): listed at
# the end of the run so that they show in the CI log.
def pytest_terminal_summary(terminalreporter) -> None:
    times = [
        (report.nodeid, value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == "example_seconds"
    ]
    if times:
        terminalreporter.section("examples' wall times")
        for nodeid, seconds in times:
            terminalreporter.write_line(f"{seconds:7.2f} s  {nodeid}")
