"""The system checks, by id, and the settings accessor's errors."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured

from meisa_sync.exceptions import ConfigurationError
from meisa_sync.mapping import ContactMapping, Field
from meisa_sync_django.checks import check_mappings
from meisa_sync_django.conf import DeletePolicy, parse, sync_settings
from meisa_sync_django.exceptions import ImproperlyConfigured
from meisa_sync_django.registry import MappingRegistry
from tests.django.testapp.models import User


def _ids(settings: Any, **meisa_sync: Any) -> list[str]:
    settings.MEISA_SYNC = meisa_sync
    messages = django_checks.run_checks(tags=["meisa_sync"])
    return [message.id for message in messages if message.id]


def test_a_complete_configuration_passes(settings: Any) -> None:
    assert _ids(settings, API_KEY="meisa_test_x") == []


def test_e001_api_key_missing(settings: Any) -> None:
    settings.MEISA_SYNC = {}
    (message,) = django_checks.run_checks(tags=["meisa_sync"])
    assert message.id == "meisa_sync.E001"
    assert message.hint is not None and 'MEISA_SYNC = {"API_KEY"' in message.hint


def test_e002_mapping_import_failing(settings: Any) -> None:
    ids = _ids(settings, API_KEY="k", MAPPINGS=["tests.django.testapp.nowhere.UserMapping"])
    assert ids == ["meisa_sync.E002"]


def test_e002_invalid_setting(settings: Any) -> None:
    assert _ids(settings, API_KEY="k", DELETE_POLICY="shred") == ["meisa_sync.E002"]


class _MissingModelMapping(ContactMapping):
    model = "testapp.Customer"
    email = Field("email")


class _MissingRelatedMapping(ContactMapping):
    model = User
    related: ClassVar[dict[Any, str]] = {"billing.Invoice": "user"}
    email = Field("email")


def test_e003_mapped_model_not_found() -> None:
    registry = MappingRegistry()
    registry.register(_MissingModelMapping)
    registry.register(_MissingRelatedMapping)
    messages = check_mappings(registry)
    assert [message.id for message in messages] == ["meisa_sync.E003"] * 2
    assert "'testapp.Customer', which is not installed" in messages[0].msg
    assert "'billing.Invoice', which is not installed" in messages[1].msg


def test_w001_several_workers_on_sqlite(settings: Any) -> None:
    ids = _ids(settings, API_KEY="k", WORKER={"PROCESSES": 3})
    assert ids == ["meisa_sync.W001"]
    assert _ids(settings, API_KEY="k", WORKER={"PROCESSES": 1}) == []


def test_w001_not_on_a_server_database(settings: Any) -> None:
    if "postgres" not in settings.DATABASES:
        pytest.skip("needs the postgres alias")
    assert _ids(settings, API_KEY="k", DATABASE="postgres", WORKER={"PROCESSES": 3}) == []


# -- the settings accessor ------------------------------------------------------------------------


def test_defaults_when_the_setting_is_absent() -> None:
    configured = parse(None)
    assert configured.api_key is None
    assert configured.base_url == "https://api.meisa.io/api/v1"
    assert configured.delete_policy is DeletePolicy.ERASE
    assert (configured.strict, configured.autodiscover, configured.database) == (
        False,
        True,
        "default",
    )
    assert configured.worker.batch_size == 100 and configured.worker.processes == 1


def test_the_accessor_follows_overridden_settings(settings: Any) -> None:
    settings.MEISA_SYNC = {"API_KEY": "meisa_test_a", "BASE_URL": "http://localhost:9/api/v1/"}
    assert sync_settings().api_key == "meisa_test_a"
    assert sync_settings().base_url == "http://localhost:9/api/v1"
    settings.MEISA_SYNC = {"API_KEY": "meisa_test_b"}
    assert sync_settings().api_key == "meisa_test_b"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "settings.MEISA_SYNC must be a dict"),
        ({"APIKEY": "x"}, "unknown key(s) 'APIKEY'"),
        ({"BASE_URL": "api.meisa.io"}, 'MEISA_SYNC["BASE_URL"] must be an http(s) URL'),
        ({"MAPPINGS": "a.b.C"}, 'MEISA_SYNC["MAPPINGS"] must be a list of dotted paths'),
        ({"DELETE_POLICY": "shred"}, 'MEISA_SYNC["DELETE_POLICY"] must be "erase" or "ignore"'),
        ({"DATABASE": "replica"}, "MEISA_SYNC[\"DATABASE\"] is 'replica', which is not in"),
        ({"STRICT": "yes"}, 'MEISA_SYNC["STRICT"] must be True or False'),
        ({"WORKER": {"CONCURENCY": 2}}, "unknown key(s) 'CONCURENCY'"),
        ({"WORKER": {"BATCH_SIZE": 0}}, 'MEISA_SYNC["WORKER"]["BATCH_SIZE"] must be a positive'),
    ],
)
def test_invalid_settings_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse(raw)
    assert message in str(caught.value)


def test_configuration_errors_are_both_the_cores_and_djangos() -> None:
    assert issubclass(ImproperlyConfigured, ConfigurationError)
    assert issubclass(ImproperlyConfigured, DjangoImproperlyConfigured)


def test_require_api_key_says_which_setting_to_add() -> None:
    with pytest.raises(ImproperlyConfigured, match=r'MEISA_SYNC\["API_KEY"\] is not set'):
        parse({}).require_api_key()
