"""One round trip per message, and exact bookkeeping when the relay misbehaves.

A busy pipelining connection writes a message's end of data together with the next message's
MAIL FROM / RCPT TO / DATA (RFC 2920), or the whole transaction with `BDAT <n> LAST` when CHUNKING
is offered (RFC 3030). Then a reply in the middle of a group may be a refusal, may never come,
the relay may hang up, or answer out of order, too often or too rarely: each message must still end
with exactly one outcome that agrees with what the relay delivered — sent: delivered once;
transient or permanent: not delivered (so trying again later sends nobody twice); unknown only when
the whole message went out and its verdict was lost.
"""

from __future__ import annotations

import pytest

from mailadmin.mail.connections import Delivery, SendSteps, SmtpConnections
from mailadmin.mail.message import BuiltMessage
from mailadmin.mail.transports import PermanentSendError, TransientSendError
from mailadmin.mail.transports.base import Finished
from mailadmin.mail.transports.pipelined import PipelinedSmtpTransport
from tests.support.scripted_smtp import ScriptedRelay, ScriptedServer, answer_quit
from tests.support.waiting import wait_until

FROM = "news@shop.example.com"
BATCH = [f"user{number}@example.com" for number in range(6)]
A, B, C = BATCH[:3]


def message_for(recipient: str) -> bytes:
    return f"From: {FROM}\r\nTo: {recipient}\r\nSubject: Hello\r\n\r\nHi {recipient}.\r\n".encode()


def send_over_one_connection(url: str, recipients: list[str], *, timeout: float = 5) -> dict[str, Finished]:
    """Hand every message to one transport in turn, then finish: each recipient's one `Finished`."""
    transport = PipelinedSmtpTransport.from_url(url, timeout=timeout)
    finished: list[Finished] = []
    try:
        for recipient in recipients:
            finished += transport.start(FROM, recipient, message_for(recipient), ticket=recipient)
        finished += transport.finish()
    finally:
        transport.close()
    assert sorted(done.ticket for done in finished) == sorted(recipients)  # each exactly once
    return {done.ticket: done for done in finished}


def kind_of(done: Finished) -> str:
    if done.outcome is not None:
        return "sent"
    if done.error.outcome_unknown:
        return "unknown"
    return "permanent" if isinstance(done.error, PermanentSendError) else "transient"


def assert_agrees_with_the_relay(results: dict[str, Finished], relay: ScriptedRelay) -> None:
    """Sent: delivered once; unknown: at most once; transient or permanent: not delivered."""
    for recipient, done in results.items():
        delivered = relay.count_for(recipient)
        expected = {"sent": (1,), "unknown": (0, 1)}.get(kind_of(done), (0,))
        assert delivered in expected, f"{recipient}: {kind_of(done)} but delivered {delivered} time(s)"


def outcomes(results: dict[str, Finished]) -> dict[str, str]:
    return {recipient: kind_of(done) for recipient, done in results.items()}


# --- the writes on the wire --------------------------------------------------------------------


def test_a_messages_end_of_data_travels_with_the_next_envelope_one_write_per_message():
    seen: list[bytes] = []

    def script(conn, read_until):
        seen.append(read_until(b"DATA\r\n"))
        conn.sendall(b"250 Ok\r\n250 Ok\r\n354 Go ahead\r\n")
        # No reply to the first body until the second envelope has arrived with it: a client that
        # waited for the first message's verdict before writing the second would hang here.
        seen.append(read_until(b"DATA\r\n"))
        conn.sendall(b"250 Ok: queued as 1\r\n250 Ok\r\n250 Ok\r\n354 Go ahead\r\n")
        seen.append(read_until(b"\r\n.\r\n"))
        conn.sendall(b"250 Ok: queued as 2\r\n")
        answer_quit(conn, read_until)

    with ScriptedServer(script) as server:
        results = send_over_one_connection(server.url, [A, B])
        server.join()

    assert outcomes(results) == {A: "sent", B: "sent"}
    assert "queued as 1" in results[A].outcome.smtp_reply and "queued as 2" in results[B].outcome.smtp_reply
    assert seen[1].startswith(message_for(A) + b".\r\nMAIL FROM:<")
    assert seen[1].endswith(f"RCPT TO:<{B}>\r\nDATA\r\n".encode())


@pytest.mark.parametrize("chunking, round_trips", [(False, 11), (True, 10)], ids=["DATA", "BDAT"])
def test_ten_messages_cost_one_round_trip_each_plus_the_last_bodys_own(chunking, round_trips):
    with ScriptedRelay(chunking=chunking) as relay:
        transport = PipelinedSmtpTransport.from_url(relay.url, timeout=5)
        for recipient in (f"r{number}@example.com" for number in range(10)):
            transport.start(FROM, recipient, message_for(recipient), ticket=recipient)
        transport.finish()
        assert transport.chunking is chunking
        transport.close()

    assert (transport.transactions, transport.round_trips) == (10, round_trips)
    assert len(relay.delivered) == 10 and relay.connections == 1
    assert all(data == message_for(recipient) for recipient, data in relay.delivered)


def test_with_chunking_the_whole_transaction_is_one_write_of_bdat_last():
    seen: dict[str, bytes] = {}
    message = message_for(A) + b".a line starting with a dot\r\n"

    def script(conn, read_until):
        # Nothing is answered until the whole message has arrived: a client waiting after RCPT hangs.
        seen["commands"] = read_until(b" LAST\r\n")
        seen["data"] = read_until(message)
        conn.sendall(b"250 Ok\r\n250 Ok\r\n250 Ok: queued\r\n")
        answer_quit(conn, read_until)

    with ScriptedServer(script, chunking=True) as server:
        with PipelinedSmtpTransport.from_url(server.url, timeout=5) as transport:
            assert transport.send(FROM, A, message).smtp_code == 250
            assert transport.round_trips == 1
        server.join()

    assert seen["commands"].endswith(f"RCPT TO:<{A}>\r\nBDAT {len(message)} LAST\r\n".encode())
    assert seen["data"] == message  # as it is: no dot-stuffing, no final dot


# --- a refusal in the middle of a group ---------------------------------------------------------


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_a_refused_end_of_data_while_the_next_envelope_is_out_fails_only_that_message(chunking):
    with ScriptedRelay(chunking=chunking) as relay:
        relay.on("BDAT" if chunking else ".", A, "reply", b"554 5.7.1 Message refused as spam")
        results = send_over_one_connection(relay.url, [A, B, C])

    assert outcomes(results) == {A: "permanent", B: "sent", C: "sent"}
    assert (results[A].error.smtp_code, results[A].error.stage) == (554, "data-end")
    assert_agrees_with_the_relay(results, relay)
    assert relay.connections == 1


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_a_refused_recipient_in_a_group_fails_only_that_message_and_the_connection_goes_on(chunking):
    with ScriptedRelay(chunking=chunking) as relay:
        relay.on("RCPT", B, "reply", b"550 5.1.1 No such user")
        results = send_over_one_connection(relay.url, [A, B, C])

    assert outcomes(results) == {A: "sent", B: "permanent", C: "sent"}
    assert results[B].error.stage == "rcpt" and B not in str(results[B].error)
    assert_agrees_with_the_relay(results, relay)
    assert relay.connections == 1 and b"RSET" in relay.commands


def test_a_refused_data_command_in_a_group_is_transient_for_that_message_only():
    with ScriptedRelay() as relay:
        relay.on("DATA", B, "reply", b"451 4.3.0 Try again later")
        results = send_over_one_connection(relay.url, [A, B, C])

    assert outcomes(results) == {A: "sent", B: "transient", C: "sent"}
    assert (results[B].error.smtp_code, results[B].error.stage) == (451, "data")
    assert_agrees_with_the_relay(results, relay)


def test_a_421_to_the_previous_message_closes_the_group_and_the_next_envelope_is_not_delivered():
    with ScriptedRelay() as relay:
        relay.on(".", A, "reply", b"421 4.7.0 Too many messages, closing")
        results = send_over_one_connection(relay.url, [A, B, C])

    assert outcomes(results) == {A: "transient", B: "transient", C: "sent"}
    assert results[A].error.smtp_code == 421
    assert_agrees_with_the_relay(results, relay)
    assert relay.connections == 2  # C went out on a fresh connection


# --- replies that never come, hang-ups ------------------------------------------------------


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_a_final_reply_that_never_comes_leaves_that_message_unknown_and_the_next_one_untouched(chunking):
    with ScriptedRelay(chunking=chunking) as relay:
        relay.on("BDAT" if chunking else ".", A, "silence")  # delivered, the verdict never sent
        results = send_over_one_connection(relay.url, [A, B, C], timeout=0.5)

    assert outcomes(results) == {A: "unknown", B: "transient" if not chunking else "sent", C: "sent"}
    assert "timed out" in str(results[A].error)
    assert_agrees_with_the_relay(results, relay)


@pytest.mark.parametrize("delivered", [True, False], ids=["after-delivery", "before-delivery"])
def test_a_hang_up_in_the_middle_of_a_group_leaves_only_the_message_whose_body_went_out_unknown(delivered):
    with ScriptedRelay() as relay:
        relay.on(".", B, "hang_up", delivered=delivered)
        results = send_over_one_connection(relay.url, [A, B, C, BATCH[3]])

    assert outcomes(results) == {A: "sent", B: "unknown", C: "transient", BATCH[3]: "sent"}
    assert results[B].error.stage == "data-end" and results[C].error.stage == "mail"
    assert_agrees_with_the_relay(results, relay)


def test_a_hang_up_between_groups_is_found_before_the_next_write_and_the_message_goes_out_on_a_new_connection():
    with ScriptedRelay() as relay:
        transport = PipelinedSmtpTransport.from_url(relay.url, timeout=5)
        (first,) = transport.start(FROM, A, message_for(A), ticket=A) + transport.finish()
        relay.hang_up_all()  # the relay's idle timeout, without a word
        wait_until(lambda: transport._session.has_unread(), 5, 0.01, "the hang-up to reach the client")

        finished = transport.start(FROM, B, message_for(B), ticket=B) + transport.finish()
        transport.close()

    assert [done.ticket for done in finished] == [B]
    assert first.outcome is not None and finished[0].outcome.reconnected
    assert relay.count_for(B) == 1 and relay.connections == 2


def test_a_hang_up_while_a_body_waits_for_company_fails_that_message_transiently_it_never_went_out():
    with ScriptedRelay() as relay:
        transport = PipelinedSmtpTransport.from_url(relay.url, timeout=5)
        assert transport.start(FROM, A, message_for(A), ticket=A) == [] and transport.awaiting
        relay.hang_up_all()
        wait_until(lambda: transport._session.has_unread(), 5, 0.01, "the hang-up to reach the client")

        finished = transport.start(FROM, B, message_for(B), ticket=B) + transport.finish()
        transport.close()

    results = {done.ticket: done for done in finished}
    assert outcomes(results) == {A: "transient", B: "sent"}
    assert_agrees_with_the_relay(results, relay)


# --- replies out of order, too many, too few ------------------------------------------------


def test_replies_out_of_order_are_noticed_and_the_message_whose_body_never_went_out_is_transient():
    with ScriptedRelay() as relay:
        relay.on("RCPT", B, "swap")  # B's RCPT reply comes after its DATA's 354
        results = send_over_one_connection(relay.url, [A, B, C])

    # A's verdict came in the same group: once the replies are out of step it may have been B's
    # MAIL reply (A's own omitted), so A, whose whole message went out, is unknown.
    assert outcomes(results) == {A: "unknown", B: "transient", C: "sent"}
    assert "out of step" in str(results[B].error)
    assert_agrees_with_the_relay(results, relay)


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_a_reply_too_many_drops_the_connection_and_no_message_is_counted_twice_or_lost(chunking):
    with ScriptedRelay(chunking=chunking) as relay:
        relay.on("MAIL", "#2", "extra")
        results = send_over_one_connection(relay.url, BATCH)

    assert outcomes(results)[A] == ("unknown" if not chunking else "sent")  # its verdict shared a garbled group
    assert outcomes(results)[B] in ("transient", "unknown")
    assert all(kind == "sent" for recipient, kind in outcomes(results).items() if recipient not in (A, B))
    assert_agrees_with_the_relay(results, relay)


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_a_reply_too_few_is_noticed_and_no_message_is_counted_twice_or_lost(chunking):
    with ScriptedRelay(chunking=chunking) as relay:
        relay.on("RCPT", B, "omit")
        results = send_over_one_connection(relay.url, BATCH, timeout=0.5)

    assert outcomes(results)[B] == ("transient" if not chunking else "unknown")
    assert all(kind == "sent" for recipient, kind in outcomes(results).items() if recipient not in (A, B))
    assert_agrees_with_the_relay(results, relay)


def test_the_last_messages_reply_sent_twice_makes_its_verdict_unknown():
    with ScriptedRelay() as relay:
        relay.on(".", B, "extra")
        results = send_over_one_connection(relay.url, [A, B])

    assert outcomes(results) == {A: "sent", B: "unknown"}
    assert_agrees_with_the_relay(results, relay)


# --- through the connections: every delivery one result, retries send nobody twice ---------------


def deliveries_and_results(url: str, recipients: list[str], *, count: int = 1, timeout: float = 5,
                           on_verdict=None) -> tuple[SmtpConnections, dict[str, object]]:
    """Send `recipients` through an `SmtpConnections` pool in two steps; the verdict per recipient.
    `on_verdict(pool)` runs as each verdict is concluded (where the slice stops on a transient error)."""
    def prepare(delivery: Delivery) -> BuiltMessage:
        recipient = delivery.payload
        return BuiltMessage(f"<{recipient}>", message_for(recipient), recipient, FROM)

    def conclude(transport, delivery: Delivery, message: BuiltMessage, verdict) -> tuple[str, object]:
        if on_verdict is not None:
            on_verdict(pool)
        return delivery.payload, verdict

    pool = SmtpConnections(count, lambda: PipelinedSmtpTransport.from_url(url, timeout=timeout),
                           SendSteps(prepare, conclude))
    pool.warm_up()
    pool.submit([Delivery(recipient) for recipient in recipients])
    wait_until(lambda: pool.outstanding == 0, 20, 0.01, "every delivery to finish")
    pool.close()
    results: dict[str, object] = {}
    while not pool.results.empty():
        recipient, verdict = pool.results.get_nowait()
        assert recipient not in results, f"{recipient} got two results"
        results[recipient] = verdict
    return pool, results


def test_through_the_connections_each_delivery_gets_one_result_and_retrying_the_transient_ones_sends_nobody_twice():
    recipients = [f"r{number}@example.com" for number in range(40)]
    with ScriptedRelay() as relay:
        relay.on(".", recipients[3], "reply", b"451 4.3.0 Try later")
        relay.on("RCPT", recipients[7], "reply", b"550 5.1.1 No such user")
        relay.on(".", recipients[12], "hang_up")
        relay.on("RCPT", recipients[20], "swap")
        relay.on("MAIL", "#30", "extra")
        relay.on(".", recipients[33], "reply", b"421 4.7.0 Closing")
        _, results = deliveries_and_results(relay.url, recipients, count=3)
        assert sorted(results) == sorted(recipients)
        failed = {recipient: verdict for recipient, verdict in results.items() if not hasattr(verdict, "took_ms")}
        retry = [recipient for recipient, error in failed.items()
                 if isinstance(error, TransientSendError) and not error.outcome_unknown]
        _, retried = deliveries_and_results(relay.url, retry)

    unknown = {recipient for recipient, error in failed.items() if error.outcome_unknown}
    assert recipients[12] in unknown and recipients[7] not in retry
    assert all(hasattr(verdict, "took_ms") for verdict in retried.values())
    for recipient in recipients:
        allowed = (0, 1) if recipient in unknown else (0,) if recipient == recipients[7] else (1,)
        assert relay.count_for(recipient) in allowed, recipient


def test_after_stop_a_message_whose_body_has_not_gone_out_is_taken_back_and_no_queued_message_is_written():
    recipients = [f"r{number}@example.com" for number in range(30)]

    with ScriptedRelay() as relay:
        # Stopped at the first verdict: the next message's envelope is out, its body waits for company.
        pool, results = deliveries_and_results(relay.url, recipients, on_verdict=SmtpConnections.stop)

    untried = []
    while not pool.untried.empty():
        untried.append(pool.untried.get_nowait())
    assert sorted([*results, *(delivery.payload for delivery in untried)]) == sorted(recipients)
    assert list(results) == [recipients[0]] and relay.count_for(recipients[0]) == 1
    assert all(relay.count_for(delivery.payload) == 0 for delivery in untried)  # never delivered
    # The second was handed over (its envelope went out with the first body), the rest never written.
    assert [delivery.payload for delivery in untried if delivery.handed_over_at is not None] == [recipients[1]]
    assert sum(command.startswith(b"RCPT") for command in relay.commands) == 2
