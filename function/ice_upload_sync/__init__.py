"""ice-upload-sync: an authoritative record of ICE URL-upload jobs.

The package is split so that importing it is cheap: nothing here imports an SDK.
``ice.py`` and the store adapters import theirs when a client is first built.

Importing it makes every log record of the process redact URL query strings (presigned
upload URLs carry credentials there: ``redact.py``) and carry the FC request ID of the
invocation that logged it, from any thread (``logs.py``).
"""
from .logs import install_record_factory

install_record_factory()
