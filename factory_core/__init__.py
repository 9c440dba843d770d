"""factory_core: what every part of the platform shares, and nothing heavier than the core dependencies.

The machine specification, the bucket layout, the raw-object and gap codecs, the sensor wire protocol,
the object store, the durable outbox (spool + uploader), alert delivery and JSON logging. It imports no
other package of this project (tests/test_architecture.py enforces the rule).
"""
