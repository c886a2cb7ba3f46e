"""Crash safety, proved against the real mint (fees 0 and 100).

- ``test_recovery.py``: one test per row of the recovery table; a wallet process is
  SIGKILLed at that point and restarted on the same data directory.
- ``test_faults.py``: failures short of a crash (500, reset, lost answer, timeout)
  and the concurrency of recovery with work in flight, in process.
- ``test_campaign.py``: hundreds of crash-restart cycles at random points,
  ``COCO_CRASH_CYCLES`` (default 400) and ``COCO_CRASH_SEED`` to size and replay it.
- ``test_audit.py``: the invariants themselves catch each kind of damage.

The machinery is in ``tests/support``: ``proxy.py`` (fault proxy with holds),
``crash_child.py`` (the wallet process) and ``crash_driver.py`` (driver and audit).
"""
