"""The lowest RQ layer: hand-offs to Redis that every process may use, with no database access.

* `dispatch.py` — enqueue, schedule and cancel the send loop's jobs; their job ids;
* `signals.py` — the stop announcements services publish and running send slices listen to;
* `outages.py` — outage records and the capped backoff that waits out Redis or the database.

It imports only `extensions`, `settings` and `limits`; services, health, errors, ops, cli and
the jobs use it, and it never imports any of them (tests/test_architecture.py checks it).
"""
