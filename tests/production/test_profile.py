"""The tests of this folder run on PostgreSQL and RabbitMQ, never on SQLite: the profile, its storage and
its broker are checked against the services themselves."""

from urllib.parse import urlsplit

import pytest
from aiida import orm
from aiida.manage import get_manager

from tests.production.conftest import _connect

pytestmark = pytest.mark.production


def test_the_profile_is_psql_dos_with_rabbitmq(aiida_profile, production_services):
    from aiida.brokers.rabbitmq.broker import RabbitmqBroker
    from aiida.storage.psql_dos.backend import PsqlDosBackend

    manager = get_manager()
    profile = manager.get_profile()
    assert profile is not None and profile.uuid == aiida_profile.uuid
    assert (profile.storage_backend, profile.process_control_backend) == ("core.psql_dos", "core.rabbitmq")
    assert isinstance(manager.get_profile_storage(), PsqlDosBackend)

    # a node stored through the ORM is a row of this session's own database on the server start.sh runs
    database = profile.storage_config["database_name"]
    assert database.startswith("aiida_cgcnn_test_")
    node = orm.Int(5).store()
    with _connect(production_services, database) as connection:
        row = connection.execute("SELECT node_type FROM db_dbnode WHERE uuid = %s", (node.uuid,)).fetchone()
    assert row == ("data.core.int.Int.",)

    # the broker is RabbitMQ on the address start.sh wrote, and it answers
    broker = manager.get_broker()
    assert isinstance(broker, RabbitmqBroker)
    url = urlsplit(broker.get_url())
    assert (url.scheme, url.hostname, url.port) == (
        "amqp",
        production_services["RABBITMQ_HOST"],
        int(production_services["RABBITMQ_PORT"]),
    )
    assert broker.get_rabbitmq_version().major >= 3


def test_a_test_here_loads_the_production_profile_and_gives_back_the_one_before(
    production, aiida_config_factory, aiida_profile_factory, tmp_path
):
    """What every test of this folder does around itself (``_on_the_production_profile``): with another
    profile loaded (an SQLite one, as other folders' conftests make), the production profile and its
    configuration are loaded, then the other one and its configuration again."""
    from aiida.manage.configuration import get_config

    from tests.production.conftest import loaded, loaded_now

    with aiida_config_factory(tmp_path) as config, aiida_profile_factory(config) as other:
        assert get_manager().get_profile().storage_backend == "core.sqlite_dos"
        with loaded(production):
            assert get_manager().get_profile().uuid == production.profile.uuid
            assert get_manager().get_profile_storage().__class__.__name__ == "PsqlDosBackend"
            assert get_config() is production.config
        now = loaded_now()
        assert now.profile.uuid == other.uuid and now.config is config
        assert get_manager().get_profile_storage().__class__.__name__ == "SqliteDosStorage"
