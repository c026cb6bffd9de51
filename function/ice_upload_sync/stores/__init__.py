"""Record stores behind one small interface; ``open_store`` picks one from ``RECORD_STORE``.

Store SDKs are imported only by the adapter that is chosen.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..config import Settings
from ..errors import ConfigError
from .base import RecordStore, Tracked, Tracking

__all__ = ["RecordStore", "Tracked", "Tracking", "check_store_setting", "open_store"]


def open_store(settings: Settings, credentials: Optional[Any] = None, *, create: bool = True) -> RecordStore:
    """The store ``RECORD_STORE`` names; it owes completion events for ``NOTIFY_STATES`` when ``NOTIFY_URL`` is set.

    ``create=False`` is for reading only (the operator's ``get``, ``list``, ``stats``): nothing is
    created, and a store that does not exist is a ``StoreError`` naming it (the file store at
    once; OSS at its first request, an empty prefix; Tablestore at its first request, a missing
    table). The function's own paths keep the default: the file store makes its folders.
    """
    store = _open(settings, credentials, create)
    store.notify_states = settings.notify_states if settings.notifies else ()
    return store


def check_store_setting(settings: Settings) -> None:
    """``ConfigError`` when ``RECORD_STORE`` (or the endpoint its store needs) is malformed; opens nothing.

    For callers that must report a malformed setting before asking for credentials.
    """
    _opener(settings)


def _open(settings: Settings, credentials: Optional[Any], create: bool) -> RecordStore:
    return _opener(settings)(credentials, create)


def _opener(settings: Settings) -> Callable[[Optional[Any], bool], RecordStore]:
    """What ``RECORD_STORE`` names, checked: a function of (credentials, create) that opens it."""
    url = settings.record_store
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ConfigError(f"RECORD_STORE {url!r} must look like file://<dir>, oss://<bucket>/<prefix> "
                          "or tablestore://<instance>/<table>")
    if scheme == "file":
        from .file import FileStore

        return lambda credentials, create: FileStore(rest, create=create)
    if scheme == "oss":
        from .oss import OssStore, endpoint_region, parse_location, resolve_endpoint  # imports oss2

        bucket, prefix = parse_location(rest)
        endpoint = resolve_endpoint(settings)
        region = endpoint_region(endpoint, settings.ice_region)
        return lambda credentials, create: OssStore(bucket, prefix, endpoint, region, credentials, create=create)
    if scheme == "tablestore":
        from .tablestore import TablestoreStore, parse_location, resolve_endpoint  # imports tablestore

        instance, table = parse_location(rest)
        endpoint = resolve_endpoint(settings, instance)
        # tables are made only by `create-tables`; reading a missing one fails naming it, with or without create
        return lambda credentials, create: TablestoreStore(instance, table, endpoint, credentials)
    raise ConfigError(f"RECORD_STORE scheme {scheme!r} is unknown (file, oss or tablestore)")
