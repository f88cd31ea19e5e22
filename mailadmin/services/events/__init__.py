"""Events out: signed webhooks that tell other systems what happened (SPEC "Events out").

* `recording.py` — `record_event`, the one place a service records an event (the outbox, in its transaction);
* `deliveries.py` — claiming due deliveries, one attempt, backoff, giving up, disabling an endpoint;
* `sending.py` — the HTTP attempt itself; `signing.py` — Standard Webhooks signatures;
* `addresses.py` — where an endpoint may point (the SSRF check); `endpoints.py` — the admins' actions;
* `payloads.py` — the `data` of each event type, built by the services that record them.

The delivery job (`mailadmin.jobs.events`) and the scheduler's sweep drive `deliveries.py`.
"""
