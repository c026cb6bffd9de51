"""What the test suites share: the fakes of ICE and of a record store (``fakes``)."""
