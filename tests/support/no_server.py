"""The promise of tests/unit and tests/engine: they run in-process and start no server.

Their conftest wraps each test's set-up, call and tear-down in `no_server`, so a test there that
starts the service (`ServerProcess.launch`, which `start_server`, `own_tiny_server`, `own_servers`,
`shared_tiny_server`, `tiny_server` and `demo_server` go through) or a gevent server in its own process
fails, naming where it belongs.
Session fixtures count too: one first requested by such a test is set up inside its set-up.
"""

import contextlib
from collections.abc import Iterator

import pytest
from gevent.baseserver import BaseServer

from tests.support.server_process import ServerProcess


@contextlib.contextmanager
def no_server(item: pytest.Item) -> Iterator[None]:
    group = item.path.parent.name

    def refuse(*args, **kwargs):
        raise AssertionError(
            f"{item.nodeid} started a server: tests/{group} starts none (tests/support/no_server.py); "
            "a test that needs one belongs in tests/api"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ServerProcess, "launch", refuse)
        patch.setattr(BaseServer, "start", refuse)
        yield


# The hooks, taken into a group's conftest.py: pytest calls them for the tests under it only.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with no_server(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with no_server(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with no_server(item):
        return (yield)
