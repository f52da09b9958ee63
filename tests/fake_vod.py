"""A local fake of the VOD OpenAPI endpoint, for the AI job tests and for trying the commands.

It answers over HTTP like the real endpoint, routing on the ``x-acs-action`` header, so the
real alibabacloud-vod20170321 client talks to it unchanged (``--endpoint http://HOST:PORT``).
Signatures are not checked; every request is recorded (``FakeVod.calls``).

- ``FakeVod.routes``: action -> a function of the request parameters returning (status, body).
- ``FakeVod.faults``: answers served first, once each, whatever the route says (throttling,
  errors), optionally for one action only and with response headers (``x-acs-retry-after``).
- ``AIJobBook``: jobs that finish after a given number of ListAIJob answers, succeed, fail or
  never finish; its ``submit`` and ``list`` are the SubmitAIJob and ListAIJob routes.

As a program it serves SubmitAIJob and ListAIJob until interrupted; each job submitted
succeeds on the ``--polls``-th ListAIJob answer about it (the sample payloads' data) - or
fails, for a media id starting with ``fail-``:

    python tests/fake_vod.py --port 8123 --polls 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vod_events.samples import payloads

Reply = tuple[int, dict[str, Any]]
Route = Callable[[dict[str, str]], Reply]


@dataclass
class Call:
    """One request the fake endpoint received."""

    action: str
    version: str
    params: dict[str, str]
    authorization: str


@dataclass
class Fault:
    """An answer served once, before the routes: to the next call of ``action`` (any action
    when empty), or only to its ``at_call``-th call (from 1)."""

    status: int
    body: dict[str, Any]
    action: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    at_call: int | None = None


def throttling(
    code: str = "Throttling.User",
    status: int = 400,
    *,
    retry_after_ms: int | None = None,
    at_call: int | None = None,
) -> Fault:
    """VOD's answer to too many calls: ``Throttling.User`` with HTTP 400 by default."""
    headers = {} if retry_after_ms is None else {"x-acs-retry-after": str(retry_after_ms)}
    body = {
        "Code": code,
        "Message": "Request was denied due to user flow control.",
        "RequestId": "req-throttled",
    }
    return Fault(status, body, action="ListAIJob", headers=headers, at_call=at_call)


@dataclass
class FakeVod:
    """The endpoint's state: what it answers, and what it was asked."""

    routes: dict[str, Route] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    endpoint: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def actions(self) -> list[str]:
        return [c.action for c in self.calls]

    def job_ids_asked(self) -> list[list[str]]:
        """The JobIds of each ListAIJob call, in order."""
        return [c.params["JobIds"].split(",") for c in self.calls if c.action == "ListAIJob"]

    def answer(self, call: Call) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.calls.append(call)
            number = self.actions().count(call.action)
            for fault in self.faults:
                if fault.action in ("", call.action) and fault.at_call in (None, number):
                    self.faults.remove(fault)
                    return fault.status, fault.body, fault.headers
            route = self.routes.get(call.action)
            if route is None:
                return 404, {"Code": "InvalidAction.NotFound", "RequestId": "r-404"}, {}
            status, body = route(call.params)
            return status, body, {}


@contextlib.contextmanager
def serve(fake: FakeVod | None = None, port: int = 0) -> Iterator[FakeVod]:
    """Serve ``fake`` (a new FakeVod by default) on 127.0.0.1 in a background thread."""
    vod = fake if fake is not None else FakeVod()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = self.rfile.read(length).decode()
            query = parse_qs(urlsplit(self.path).query) | parse_qs(form)
            call = Call(
                self.headers.get("x-acs-action", ""),
                self.headers.get("x-acs-version", ""),
                {k: v[0] for k, v in query.items()},
                self.headers.get("Authorization", ""),
            )
            status, reply, headers = vod.answer(call)
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    vod.endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        yield vod
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- AI jobs ---------------------------------------------------------------------------------


def _sample_data(name: str) -> str:
    """The Data of a sample event payload, as the JSON text ListAIJob sends."""
    data = json.loads(payloads()[name])["Data"]
    return data if isinstance(data, str) else json.dumps(data)


TAG_DATA = _sample_data("AIVideoTagComplete.json")
DNA_DATA = _sample_data("AIMediaDNAComplete.json")
AUDIT_DATA = _sample_data("AIMediaAuditComplete.json")
SAMPLE_DATA = {"AIVideoTag": TAG_DATA, "AIMediaDNA": DNA_DATA, "AIMediaAudit": AUDIT_DATA}

SUCCESS, FAIL, NEVER = "success", "fail", "never"


@dataclass
class ScriptedJob:
    """A job ListAIJob reports as ``init``, then ``processing``, for ``polls`` answers, then
    finished with ``outcome`` (success, fail; ``never``: processing for ever)."""

    job_id: str
    type: str = "AIVideoTag"
    media_id: str = "media-1"
    polls: int = 0
    outcome: str = SUCCESS
    data: str | None = None  # success: the sample data of the type unless given
    code: str = "InvalidMedia.NoVideoStream"  # fail
    message: str = "The media has no video stream."  # fail
    answers: int = 0

    def reported(self) -> dict[str, Any]:
        self.answers += 1
        job: dict[str, Any] = {
            "JobId": self.job_id,
            "Type": self.type,
            "MediaId": self.media_id,
            "CreationTime": "2024-05-01T10:00:00Z",
        }
        if self.outcome == NEVER or self.answers <= self.polls:
            return job | {"Status": "init" if self.answers == 1 else "processing"}
        job["CompleteTime"] = "2024-05-01T10:02:00Z"
        if self.outcome == FAIL:
            return job | {"Status": "fail", "Code": self.code, "Message": self.message}
        data = self.data if self.data is not None else SAMPLE_DATA.get(self.type, "{}")
        return job | {"Status": "success", "Code": "0", "Message": "OK", "Data": data}


@dataclass
class AIJobBook:
    """The AI jobs the fake knows, and the SubmitAIJob / ListAIJob routes over them."""

    jobs: dict[str, ScriptedJob] = field(default_factory=dict)
    polls: int = 0  # of the jobs SubmitAIJob creates
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, job_id: str, **script: Any) -> ScriptedJob:
        job = self.jobs[job_id] = ScriptedJob(job_id, **script)
        return job

    def install(self, vod: FakeVod) -> AIJobBook:
        vod.routes["SubmitAIJob"] = self.submit
        vod.routes["ListAIJob"] = self.list
        return self

    def submit(self, params: dict[str, str]) -> Reply:
        media_id = params["MediaId"]
        created = []
        for kind in params.get("Types", "AIVideoTag").split(","):
            seed = f"{media_id}/{kind}/{next(self.numbers)}".encode()
            job_id = hashlib.sha1(seed).hexdigest()[:32]  # 32 hex digits, as VOD's
            outcome = FAIL if media_id.startswith("fail-") else SUCCESS
            self.add(job_id, type=kind, media_id=media_id, polls=self.polls, outcome=outcome)
            created.append({"JobId": job_id, "MediaId": media_id, "Type": kind})
        return 200, {"RequestId": "req-submit", "AIJobList": {"AIJob": created}}

    def list(self, params: dict[str, str]) -> Reply:
        reported, missing = [], []
        for job_id in params["JobIds"].split(","):
            job = self.jobs.get(job_id)
            if job is None:
                missing.append(job_id)
            else:
                reported.append(job.reported())
        return 200, {
            "RequestId": "req-list",
            "AIJobList": {"AIJob": reported},
            "NonExistAIJobIds": {"String": missing},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="a local fake of VOD's SubmitAIJob/ListAIJob")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument(
        "--polls", type=int, default=2, help="ListAIJob answers before a job finishes"
    )
    args = parser.parse_args()
    book = AIJobBook(polls=args.polls)
    with serve(port=args.port) as vod:
        book.install(vod)
        print(f"fake VOD endpoint on {vod.endpoint}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
