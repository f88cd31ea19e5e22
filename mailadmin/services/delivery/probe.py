"""The send loop's status probe: the campaign's status and the global switch, read once per batch
(the safety net for a lost stop signal), through the session like every other read of the send
path. Empty until the probe leaves `jobs/send.py` (its raw driver cursor); export it from the
package `__init__` when it lands here."""
