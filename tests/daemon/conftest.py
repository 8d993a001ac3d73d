from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# first: it puts this environment's ``verdi`` on PATH before aiida is imported
from tests.aiida_fixtures import *  # noqa: F403

if TYPE_CHECKING:
    from aiida.engine.daemon.client import DaemonClient


@pytest.fixture(scope="session")
def aiida_profile(aiida_config, aiida_profile_factory):
    """A temporary profile with aiida-core's built-in ZeroMQ broker, so the daemon runs with no service."""
    with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
        # a loaded 2-core machine answers the daemon's controller slower than the default 2 s
        aiida_config.set_option("daemon.timeout", 60, scope=profile.name)
        yield profile


def stop_daemon_with_its_broker(client: DaemonClient, timeout: float = 120) -> None:
    """The first half of what ``verdi daemon restart`` runs on a ``verdi presto`` profile, whose broker
    is one of the daemon's circus watchers: stop the daemon and its broker. The broker keeps its queue
    on disk and, when started again, puts back the tasks the stopped workers held.

    Here the broker is the pytest fixture's own service, which stopping the daemon would leave running.
    That service (aiida-core 2.9.4's) can lose a task when a worker disconnects: its probe for the dead
    peer may run before the peer is dropped, and no second disconnect event comes (a bare server and
    socket showed it in 25 of 60 graceful closes); the task's process then waits for ever. So the
    fixture's broker is stopped too, and :func:`start_daemon_with_its_broker` lets the daemon start its
    own, as on a presto profile."""
    from aiida.brokers.zeromq import ZeromqBroker
    from aiida.manage import get_manager

    client.stop_daemon(wait=True)
    _wait(lambda: not client.is_daemon_running, timeout, "the daemon to stop", client)
    broker = ZeromqBroker(client.profile)
    pid = broker._get_service_pid()
    if pid is not None and broker.check_service_reachable():
        os.kill(pid, signal.SIGINT)  # the service's own graceful stop; it removes its PID file last
        _wait(lambda: not broker.check_service_reachable(), timeout, "the broker to stop", client)
    # this process's communicator is connected to the stopped broker's socket: a new one on demand
    manager = get_manager()
    manager.reset_runner()
    manager.reset_broker()


def start_daemon_with_its_broker(client: DaemonClient, timeout: float = 120) -> None:
    """The daemon started with no broker running starts the broker as one of its watchers."""
    from aiida.brokers.zeromq import ZeromqBroker

    client.start_daemon()
    broker = ZeromqBroker(client.profile)
    _wait(broker.check_service_reachable, timeout, "the daemon's broker to start", client)


def _wait(condition: Callable[[], object], timeout: float, what: str, client: DaemonClient) -> None:
    """Poll until ``condition()``; on timeout, fail with the tails of the daemon's and broker's logs."""
    from aiida.brokers.zeromq import ZeromqBroker
    from aiida.manage.configuration import get_config

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            with open(client.daemon_log_file, encoding="utf-8") as log:
                tail = log.read()[-5000:]
            broker = ZeromqBroker(client.profile)
            log_file = Path(get_config().filepaths(client.profile)["broker_service"]["log"])
            broker_tail = log_file.read_text(encoding="utf-8")[-3000:] if log_file.exists() else ""
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; daemon log:\n{tail}\n"
                f"broker: {broker.probe_service_status()}; its log:\n{broker_tail}"
            )
        time.sleep(0.5)
