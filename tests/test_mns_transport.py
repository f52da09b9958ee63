"""The MNS adapter's own receive path: the fast reply reader agrees with the SDK's decoder,
and leaves anything unusual to it. Its timeouts: a peer that accepts and never answers, over
http and https, fails each call after its timeout instead of blocking it forever.

What MNSTransport must do as a `Transport` (bodies and properties round-trip, receipt
handles, long polls, interrupt...) is the contract suite's, run against the real SDK and
the local server: tests/contracts/test_transport_contract.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.models import Config as CredentialConfig
from alibabacloud_credentials.provider.profile import ProfileCredentialsProvider
from mns.mns_xml_handler import BatchRecvMessageDecoder
from netfaults import SilentPeer, server_context, tls_files

from vod_events.mns_server import LocalMNSServer
from vod_events.transports import FatalTransportError, TransportError
from vod_events.transports.mns import (
    BATCH_SIZE,
    MNSTransport,
    Timeouts,
    Unreachable,
    _plain_messages,
    _received,
)


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(queues=("q",), access_key_id="k", access_key_secret="s") as srv:
        yield srv


@pytest.fixture
def transport(server: LocalMNSServer) -> MNSTransport:
    return MNSTransport(server.endpoint, "q", access_key_id="k", access_key_secret="s")


REPLY = """<?xml version="1.0" encoding="UTF-8"?>
<Messages xmlns="http://mns.aliyuncs.com/doc/v1">
{messages}
</Messages>"""

MESSAGE = """<Message>
  <MessageId>{i}</MessageId><ReceiptHandle>h-{i}</ReceiptHandle>
  <MessageBodyMD5>00</MessageBodyMD5><MessageBody>{body}</MessageBody>
  <EnqueueTime>1700000000000</EnqueueTime><NextVisibleTime>1700000030000</NextVisibleTime>
  <FirstDequeueTime>1700000000001</FirstDequeueTime><DequeueCount>{i}</DequeueCount>
  <Priority>8</Priority>
</Message>"""


def test_fast_reader_agrees_with_the_sdk_decoder() -> None:
    bodies = ["plain", "a &amp; b &lt;c&gt;", "&#x2028; and &#233;", " spaced "]
    xml = REPLY.format(
        messages="\n".join(MESSAGE.format(i=i + 1, body=b) for i, b in enumerate(bodies))
    )
    fast = _plain_messages(xml)
    assert fast is not None
    sdk = [_received(entry) for entry in BatchRecvMessageDecoder.decode(xml, False, "req")]
    assert fast == sdk
    assert [m.body for m in fast] == ["plain", "a & b <c>", "\u2028 and é", " spaced "]


@pytest.mark.parametrize(
    "variant",
    [
        MESSAGE.format(i=1, body=""),  # empty element: the SDK's rules apply
        MESSAGE.format(i=1, body="x").replace("<Priority>8</Priority>", ""),  # field missing
        MESSAGE.format(i="x", body="x"),  # a number that is not one
        MESSAGE.format(i=1, body="x").replace("</Message>", "<Extra>1</Extra></Message>"),
    ],
)
def test_anything_unusual_is_left_to_the_sdk(variant: str) -> None:
    assert _plain_messages(REPLY.format(messages=variant)) is None


# ---------------------------------------------------------------- batch send, errors, chain


def test_send_batch_returns_the_ids_in_order(transport: MNSTransport) -> None:
    bodies = [f"message {i}" for i in range(BATCH_SIZE)]
    ids = transport.send_batch(bodies)
    assert len(set(ids)) == BATCH_SIZE
    received: dict[str, str] = {}
    while len(received) < BATCH_SIZE:
        batch = transport.receive(16, 1)
        assert batch, "messages missing"
        received.update({m.message_id: m.body for m in batch})
    assert [received[i] for i in ids] == bodies  # each id is its body's, as sent


@pytest.mark.parametrize("count", [0, BATCH_SIZE + 1])
def test_send_batch_sizes_outside_1_to_16_are_refused_before_sending(
    transport: MNSTransport, count: int
) -> None:
    with pytest.raises(ValueError, match=r"a batch holds 1\.\.16 messages"):
        transport.send_batch(["x"] * count)
    assert transport.receive(16, 0) == []


def test_send_batch_refusals_are_translated_once(server: LocalMNSServer) -> None:
    missing = MNSTransport(server.endpoint, "nope", access_key_id="k", access_key_secret="s")
    with pytest.raises(FatalTransportError) as gone:
        missing.send_batch(["x"])
    assert gone.value.code == "QueueNotExist"
    assert str(gone.value).startswith("QueueNotExist: ")
    assert "(request id " in str(gone.value)
    wrong = MNSTransport(server.endpoint, "q", access_key_id="k", access_key_secret="bad-s3cret")
    with pytest.raises(FatalTransportError) as refused:
        wrong.send_batch(["x"])
    assert refused.value.code == "SignatureDoesNotMatch"
    assert "bad-s3cret" not in str(refused.value)


def test_no_reply_is_unreachable_and_still_a_transport_error() -> None:
    with LocalMNSServer(queues=("q",)) as stopped:
        endpoint = stopped.endpoint
    transport = MNSTransport(endpoint, "q", access_key_id="k", access_key_secret="s")
    with pytest.raises(Unreachable) as caught:
        transport.send_batch(["x"])
    assert isinstance(caught.value, TransportError)
    assert not isinstance(caught.value, FatalTransportError)  # worth retrying
    assert caught.value.code == "NetWorkException"
    assert str(caught.value).startswith("network error: ")


def test_a_credential_client_signs_every_request(server: LocalMNSServer) -> None:
    client = CredentialClient(
        CredentialConfig(type="access_key", access_key_id="k", access_key_secret="s")
    )
    transport = MNSTransport(server.endpoint, "q", credential_client=client)
    message_id = transport.send("signed by the client")
    assert [m.message_id for m in transport.receive(16, 1)] == [message_id]


def test_a_credential_client_that_finds_nothing_is_fatal(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    # alibabacloud-credentials reads its variables once, at import: a profile file that does
    # not exist fails the same way in any test order.
    missing = ProfileCredentialsProvider(profile_file=str(tmp_path / "none.ini"))
    transport = MNSTransport(
        server.endpoint, "q", credential_client=CredentialClient(provider=missing)
    )
    with pytest.raises(FatalTransportError) as caught:
        transport.send("never sent")
    assert caught.value.code == "CredentialsUnavailable"
    assert "default credential chain" in str(caught.value)


# ------------------------------------------------------------------------------ timeouts

SHORT = Timeouts(call=0.5, poll_margin=0.5)
SECRET = "timeout-secret-DO-NOT-LOG"


def outcome_within(call: Callable[[], object], limit: float) -> BaseException | None:
    """What `call` raised (None: it returned), failing the test if it blocks past `limit`."""
    caught: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            caught.append(exc)
        else:
            caught.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the call still blocks after {limit} s"
    return caught[0]


@pytest.fixture(params=["http", "https", "https-no-handshake"])
def silent(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SilentPeer]:
    """A peer that accepts connections and never answers: plain, over TLS after the
    handshake (its certificate trusted), and over TLS without even the handshake."""
    if request.param == "http":
        peer = SilentPeer()
    else:
        cert, key = tls_files(tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by the SDK's default context
        peer = SilentPeer(server_context(cert, key), handshake=request.param == "https")
    with peer:
        yield peer


CALLS: dict[str, Callable[[MNSTransport], object]] = {
    "queue_info": lambda t: t.queue_info(),
    "receive": lambda t: t.receive(16, 1),
    "send": lambda t: t.send("body"),
    "delete": lambda t: t.delete(["handle"]),
    "change_visibility": lambda t: t.change_visibility("handle", 30),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_silent_peer_fails_each_call_after_its_timeout(silent: SilentPeer, call: str) -> None:
    transport = MNSTransport(
        silent.endpoint, "q", access_key_id="k", access_key_secret=SECRET, timeouts=SHORT
    )
    started = time.monotonic()
    error = outcome_within(lambda: CALLS[call](transport), limit=15)
    elapsed = time.monotonic() - started
    assert isinstance(error, Unreachable), repr(error)
    assert silent.connections >= 1  # it did connect: the peer is silent, not absent
    timeout = SHORT.receive(1) if call == "receive" else SHORT.call
    assert str(error) == f"network error: no answer within {timeout:g} s"
    assert SECRET not in str(error)
    # A socket timeout per operation (connect, handshake, send, read), and the SDK may send
    # once more on a fresh connection: a few timeouts at most, not a hang.
    assert elapsed < 6 * timeout + 3


def test_a_call_timed_out_on_a_slow_server_leaves_the_transport_usable(
    server: LocalMNSServer,
) -> None:
    transport = MNSTransport(
        server.endpoint, "q", access_key_id="k", access_key_secret="s", timeouts=SHORT
    )
    server.set_faults(latency_ms=3000)  # 1.5 s before the answer is even prepared
    error = outcome_within(lambda: transport.send("slow"), limit=15)
    assert isinstance(error, Unreachable)
    assert "no answer within 0.5 s" in str(error)
    server.set_faults(latency_ms=0)
    message_id = transport.send("fast again")  # a new connection, the same transport
    received = {m.message_id for m in transport.receive(16, 2)}
    assert message_id in received


def test_a_long_poll_gets_its_wait_plus_the_margin_not_the_call_timeout(
    server: LocalMNSServer,
) -> None:
    transport = MNSTransport(
        server.endpoint,
        "q",
        access_key_id="k",
        access_key_secret="s",
        timeouts=Timeouts(call=0.5, poll_margin=2.0),
    )
    started = time.monotonic()
    assert transport.receive(16, 2) == []  # an empty queue: a full 2 s long poll, no timeout
    assert time.monotonic() - started >= 1.5


def test_the_endpoint_shown_never_holds_user_info() -> None:
    transport = MNSTransport("https://user:pa55@127.0.0.1:9/", "q", access_key_secret=SECRET)
    assert transport.endpoint == "https://127.0.0.1:9"
