"""Record stores behind one small interface; ``open_store`` picks one from ``RECORD_STORE``.

Store SDKs are imported only by the adapter that is chosen.
"""
from __future__ import annotations

from typing import Any, Optional

from ..config import Settings
from ..errors import ConfigError
from .base import RecordStore, Tracked, Tracking

__all__ = ["RecordStore", "Tracked", "Tracking", "open_store"]


def open_store(settings: Settings, credentials: Optional[Any] = None) -> RecordStore:
    """The store ``RECORD_STORE`` names; it owes completion events for ``NOTIFY_STATES`` when ``NOTIFY_URL`` is set."""
    store = _open(settings, credentials)
    store.notify_states = settings.notify_states if settings.notifies else ()
    return store


def _open(settings: Settings, credentials: Optional[Any]) -> RecordStore:
    url = settings.record_store
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ConfigError(f"RECORD_STORE {url!r} must look like file://<dir>, oss://<bucket>/<prefix> "
                          "or tablestore://<instance>/<table>")
    if scheme == "file":
        from .file import FileStore

        return FileStore(rest)
    if scheme == "oss":
        from .oss import OssStore, endpoint_region, parse_location, resolve_endpoint  # imports oss2

        bucket, prefix = parse_location(rest)
        endpoint = resolve_endpoint(settings)
        return OssStore(bucket, prefix, endpoint, endpoint_region(endpoint, settings.ice_region), credentials)
    if scheme == "tablestore":
        from .tablestore import TablestoreStore, parse_location, resolve_endpoint  # imports tablestore

        instance, table = parse_location(rest)
        return TablestoreStore(instance, table, resolve_endpoint(settings, instance), credentials)
    raise ConfigError(f"RECORD_STORE scheme {scheme!r} is unknown (file, oss or tablestore)")
