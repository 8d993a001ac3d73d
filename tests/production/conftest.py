"""The production profile: ``core.psql_dos`` storage on PostgreSQL with the ``core.rabbitmq`` broker, as
research groups run AiiDA. The modules of this folder re-run the plugin's AiiDA tests on it.

``.ci/production/start.sh`` starts both services on 127.0.0.1 and writes their settings to
``$PRODUCTION_DIR/env`` (default ``/tmp/aiida-cgcnn-production/env``). Without them these tests are
skipped, except under CI, where missing services are a failure.

Each pytest process (each xdist worker) creates its own database (a UUID in its name, dropped at the end)
and its own profile; RabbitMQ's queues and exchanges are named after the profile's UUID, so workers share
neither. Other folders' conftests make their own session profiles in the same worker and AiiDA has one
loaded at a time (the last made): each test here loads the production profile with its configuration
and loads back what was loaded before, so that no test here runs on SQLite and no test elsewhere on this
profile.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aiida_fixtures import *  # noqa: F403
from tests.services import env_file

SERVICES = Path(os.environ.get("PRODUCTION_DIR", "/tmp/aiida-cgcnn-production"))


def services_env() -> dict[str, str] | None:
    """The settings ``start.sh`` wrote, or None when it has not (or stop.sh ran)."""
    return env_file(SERVICES / "env")


def _connect(env: dict[str, str], dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=env["PGHOST"],
        port=int(env["PGPORT"]),
        user=env["PGUSER"],
        password=env["PGPASSWORD"],
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


def _unavailable(env: dict[str, str] | None) -> str | None:
    """Why the services cannot be used, or None."""
    if env is None:
        return f"no PostgreSQL + RabbitMQ (run .ci/production/start.sh; looked for {SERVICES / 'env'})"
    try:
        _connect(env).close()
    except Exception as error:  # any reason is reported
        return f"PostgreSQL of {SERVICES / 'env'} does not answer: {error}"
    try:
        socket.create_connection((env["RABBITMQ_HOST"], int(env["RABBITMQ_PORT"])), timeout=10).close()
    except OSError as error:
        return f"RabbitMQ of {SERVICES / 'env'} does not answer: {error}"
    return None


@pytest.fixture(scope="session")
def production_services() -> dict[str, str]:
    env = services_env()
    problem = _unavailable(env)
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    assert env is not None
    return env


@dataclass(frozen=True)
class Loaded:
    """What AiiDA has loaded: the configuration (its folder, ``AIIDA_PATH``) and the profile."""

    config: Any
    config_dir: Path
    aiida_path: str | None
    profile: Any


def loaded_now() -> Loaded:
    from aiida.manage import configuration, get_manager
    from aiida.manage.configuration.settings import DEFAULT_AIIDA_PATH_VARIABLE, AiiDAConfigDir

    return Loaded(
        configuration.CONFIG,
        AiiDAConfigDir.get(),
        os.environ.get(DEFAULT_AIIDA_PATH_VARIABLE),
        get_manager().get_profile(),
    )


def load(state: Loaded) -> None:
    """Load ``state``'s configuration object and profile (nothing when they are loaded already)."""
    from aiida.manage import configuration, get_manager
    from aiida.manage.configuration.settings import DEFAULT_AIIDA_PATH_VARIABLE, AiiDAConfigDir

    now = loaded_now()
    if now.config is not state.config or now.config_dir != state.config_dir:
        AiiDAConfigDir.set(state.config_dir)
        configuration.CONFIG = state.config
    if state.aiida_path is None:
        os.environ.pop(DEFAULT_AIIDA_PATH_VARIABLE, None)
    else:
        os.environ[DEFAULT_AIIDA_PATH_VARIABLE] = state.aiida_path
    manager = get_manager()
    if state.profile is None:
        manager.unload_profile()
    elif now.profile is None or now.profile.uuid != state.profile.uuid:
        manager.load_profile(state.profile, allow_switch=True)


@contextlib.contextmanager
def loaded(state: Loaded) -> Iterator[None]:
    before = loaded_now()
    load(state)
    try:
        yield
    finally:
        load(before)


@pytest.fixture(scope="session")
def production(production_services, tmp_path_factory, aiida_config_factory, aiida_profile_factory):
    """A ``core.psql_dos`` + ``core.rabbitmq`` profile in its own configuration, on a database of its own.
    Made without changing what is loaded (the tests load it, see ``_on_the_production_profile``)."""
    from psycopg import sql

    env = production_services
    database = f"aiida_cgcnn_test_{uuid.uuid4().hex}"
    with _connect(env) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    storage = {
        "database_engine": "postgresql_psycopg",
        "database_hostname": env["PGHOST"],
        "database_port": int(env["PGPORT"]),
        "database_username": env["PGUSER"],
        "database_password": env["PGPASSWORD"],
        "database_name": database,
        "repository_uri": tmp_path_factory.mktemp("production-repository").as_uri(),
    }
    broker = {
        "broker_protocol": "amqp",
        "broker_username": env.get("RABBITMQ_USER", "guest"),
        "broker_password": env.get("RABBITMQ_PASSWORD", "guest"),
        "broker_host": env["RABBITMQ_HOST"],
        "broker_port": int(env["RABBITMQ_PORT"]),
        "broker_virtual_host": "",
    }
    before = loaded_now()
    try:
        with (
            aiida_config_factory(tmp_path_factory.mktemp("production-config")) as config,
            aiida_profile_factory(
                config,
                storage_backend="core.psql_dos",
                storage_config=storage,
                broker_backend="core.rabbitmq",
                broker_config=broker,
            ) as profile,
        ):
            # a loaded 2-core machine answers the daemon's controller slower than the default 2 s
            config.set_option("daemon.timeout", 60, scope=profile.name)
            config.store()
            state = loaded_now()
            load(before)
            try:
                yield state
            finally:
                load(state)  # the factories give back what they found from the state they made
    finally:
        with _connect(env) as connection:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            connection.execute(drop)


@pytest.fixture(scope="session")
def aiida_config(production):
    return production.config


@pytest.fixture(scope="session", autouse=True)
def aiida_profile(production):
    return production.profile


@pytest.fixture(autouse=True)
def _on_the_production_profile(production):
    with loaded(production):
        yield


@pytest.fixture(scope="session")
def daemon_client(production):
    """aiida-core's session daemon client, made (and its daemon stopped) on the production profile."""
    from aiida.engine.daemon.client import DaemonClient, DaemonNotRunningException

    with loaded(production):
        client = DaemonClient(production.profile)
    yield client
    with loaded(production):
        try:
            client.stop_daemon(wait=True)
        except DaemonNotRunningException:
            pass
