"""What the test suites share, and what stands in for the cloud on loopback.

- ``fakes``: one scriptable ICE and one in-memory record store, for the unit tests (no wire);
- the emulators, each speaking its service's wire protocol to the unmodified SDK: ``ice``
  (and ``openapi``, ``acs3``: the OpenAPI signature every Alibaba Cloud API shares),
  ``eventbridge``, ``oss_moto`` (moto's S3 server in OSS's dialect), ``tablestore`` (with
  ``tablestore_wire``), ``fc`` (FC's front end: HTTP trigger, async invocations, timers),
  ``webhook_receiver`` and ``trigger_stub``; ``test_*.py`` beside them test the emulators.

The emulators run the suite and ``make local`` / ``make emulator``; none is deployed.
"""
