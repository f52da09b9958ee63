"""Submit VOD AI jobs (SubmitAIJob) and read their status and results (ListAIJob).

The jobs run asynchronously: their results arrive later as the ``AIVideoTagComplete`` and
``AIMediaDNAComplete`` events this daemon consumes. ``list_ai_jobs`` reads the same results
on demand, decoded into the same typed results as the events (``vod_events.results``).

    jobs = submit_ai_job("3D3D1234...", ["AIVideoTag"], config='{"AIVideoTag": {...}}')
    for job in list_ai_jobs([job.job_id for job in jobs]):
        print(job.status, job.result)

    done = wait_for_jobs([job.job_id for job in jobs], timeout=600)
    print(done.results, done.failed, done.running, done.timed_out)

Every input is checked before any request is sent (``AIJobInputError``); a refusal by the
service or an unreachable endpoint raises ``VodApiError`` with the service's error code and
request id. Credentials are a ``Credentials`` value: an AccessKey, or the Alibaba Cloud default
credential chain (the default when none is given; it reads the ``ALIBABA_CLOUD_ACCESS_KEY_ID``
/ ``_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN`` variables first). Where the commands find
them (flags, environment) is decided by ``vod_events.config.credentials``, as for the daemon.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vod_events.backoff import ExponentialBackoff
from vod_events.errors import VodEventsError
from vod_events.results import MediaAuditResult, MediaDnaResult, ResultFormatError, VideoTagResult

__all__ = [
    "AIJob",
    "AIJobInputError",
    "AIResult",
    "Credentials",
    "PollPolicy",
    "SubmittedJob",
    "VodApiError",
    "WaitResult",
    "list_ai_jobs",
    "submit_ai_job",
    "wait_for_jobs",
]

# The job types SubmitAIJob accepts, and the regions offering each (SubmitAIJob's docs).
TYPE_REGIONS: dict[str, frozenset[str]] = {
    "AIVideoTag": frozenset({"cn-beijing", "cn-shanghai"}),
    "AIMediaDNA": frozenset({"cn-beijing", "cn-shanghai", "ap-southeast-1"}),
}
DEFAULT_REGION = "cn-shanghai"
MAX_EXTEND_BYTES = 512  # VOD passes UserData.Extend through to the events, up to this size
MAX_IDS_PER_CALL = 10  # ListAIJob's limit on JobIds
TIMEOUT_MS = 10_000  # connect and read timeout of each API call
FIRST_POLL_INTERVAL = 2.0  # wait_for_jobs: seconds between its first two rounds of calls...
MAX_POLL_INTERVAL = 30.0  # ... growing up to this

AIResult = VideoTagResult | MediaDnaResult | MediaAuditResult

# ListAIJob's Status of a job that will not change any more. Compared in lower case.
SUCCESS, FAIL = "success", "fail"
NOT_FOUND = "not_found"  # ListAIJob does not know the id (NonExistAIJobIds)
UNSEEN = "unknown"  # wait_for_jobs has no answer about the job yet

# The HTTP status and error codes with which the service asks callers to slow down.
THROTTLING_CODE_PREFIX = "Throttling"  # Throttling, Throttling.User, Throttling.Api, ...
SERVICE_UNAVAILABLE = 503

# How ListAIJob's Data is read, per job Type: the same readers as the events' Data.
RESULT_READERS: dict[str, Callable[[str], AIResult]] = {
    "AIVideoTag": VideoTagResult.from_data,
    "AIMediaDNA": MediaDnaResult.from_data,
    "AIMediaAudit": MediaAuditResult.from_data,
}


class AIJobInputError(VodEventsError):
    """An argument that would make the request fail; nothing was sent."""


class VodApiError(VodEventsError):
    """The VOD API refused a request (``code``, ``request_id`` from its reply) or could not be
    reached (``code`` is empty)."""

    def __init__(
        self,
        action: str,
        message: str,
        *,
        code: str = "",
        request_id: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.action = action
        self.message = message
        self.code = code
        self.request_id = request_id
        self.status_code = status_code
        self.retry_after = retry_after  # seconds, when the service said how long to wait
        super().__init__(self.one_line())

    @property
    def throttled(self) -> bool:
        """The service asked to slow down: a ``Throttling*`` code (VOD sends them with HTTP 400
        or 503), any HTTP 503, or a retry-after time. Asking again later can succeed."""
        return (
            self.code.startswith(THROTTLING_CODE_PREFIX)
            or self.status_code == SERVICE_UNAVAILABLE
            or self.retry_after is not None
        )

    def one_line(self) -> str:
        """``SubmitAIJob failed: Forbidden.RAM (HTTP 403), request id 2581...: <message>``."""
        head = self.code
        if self.status_code is not None:
            head = f"{head} (HTTP {self.status_code})".strip()
        if self.request_id:
            head = f"{head}, request id {self.request_id}"
        return f"{self.action} failed: " + (f"{head}: {self.message}" if head else self.message)


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """Who calls Alibaba Cloud: an AccessKey (``security_token`` for a temporary STS one), or
    ``default_chain`` for the Alibaba Cloud default credential chain (environment, RAM role,
    OIDC, profile) with refresh, in which case the AccessKey fields are not used.

    A plain value: which flags, config keys and variables fill it is decided in one place,
    ``vod_events.config.credentials.resolve``. Its repr says which parts are set, never a
    value (the id included: the config treats it as a secret too).
    """

    access_key_id: str = ""
    access_key_secret: str = ""
    security_token: str = ""
    default_chain: bool = False

    @property
    def has_access_key(self) -> bool:
        """Both the id and the secret are set (the token is optional)."""
        return bool(self.access_key_id and self.access_key_secret)

    def __repr__(self) -> str:
        if self.default_chain:
            return "Credentials(default_chain=True)"
        shown = ", ".join(
            f"{name}={'<set>' if getattr(self, name) else '<unset>'}"
            for name in ("access_key_id", "access_key_secret", "security_token")
        )
        return f"Credentials({shown})"


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    """One job SubmitAIJob created."""

    job_id: str
    type: str
    media_id: str


@dataclass(frozen=True, slots=True)
class AIJob:
    """One job as ListAIJob reports it.

    status: success / fail / init / processing, or ``not_found`` for an id VOD does not know.
    result: the decoded ``data`` of a successful job (``None`` otherwise, or when it cannot be
        read: ``result_error`` then says why and ``data`` still holds it as sent).
    """

    job_id: str
    status: str
    type: str | None = None
    media_id: str | None = None
    code: str | None = None
    message: str | None = None
    creation_time: str | None = None
    complete_time: str | None = None
    result: AIResult | None = None
    result_error: str | None = None
    data: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status.lower() == SUCCESS

    @property
    def failed(self) -> bool:
        return self.status.lower() == FAIL

    @property
    def finished(self) -> bool:
        """success or fail: the job will not change any more."""
        return self.succeeded or self.failed


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How ``wait_for_jobs`` paces its ListAIJob calls.

    Rounds of calls start ``first_interval`` seconds apart, growing by ``factor`` up to
    ``max_interval``: an AI job takes minutes, and most of them are spent waiting. Two calls
    are never closer than ``call_spacing`` (so at most 2 a second by default): VOD's QPS limits
    count every call of the account and its RAM users, so a waiting command leaves the rest to
    them. A throttling answer waits ``throttle.delay(n)`` for the n-th in a row, or what the
    service asked for if longer, then asks again.
    """

    first_interval: float = FIRST_POLL_INTERVAL
    factor: float = 1.5
    max_interval: float = MAX_POLL_INTERVAL
    call_spacing: float = 0.5
    throttle: ExponentialBackoff = field(
        default_factory=lambda: ExponentialBackoff(initial=1.0, maximum=30.0)
    )

    def interval(self, round_number: int) -> float:
        """Seconds between round ``round_number`` (from 1) and the next."""
        exponent = min(max(round_number, 1) - 1, 64)
        return max(
            self.call_spacing, min(self.max_interval, self.first_interval * self.factor**exponent)
        )


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What ``wait_for_jobs`` saw: every job as last reported, in the order asked.

    A job with no answer yet has status ``unknown``. ``timed_out``: the time ran out with jobs
    still running. Waiting also stops, before the time is out, at the first round in which VOD
    did not know an id (``not_found``): that job can never finish.
    """

    jobs: tuple[AIJob, ...]
    timed_out: bool = False
    elapsed: float = 0.0

    @property
    def succeeded(self) -> list[AIJob]:
        return [job for job in self.jobs if job.succeeded]

    @property
    def failed(self) -> list[AIJob]:
        return [job for job in self.jobs if job.failed]

    @property
    def not_found(self) -> list[AIJob]:
        return [job for job in self.jobs if job.status == NOT_FOUND]

    @property
    def running(self) -> list[AIJob]:
        """Not finished, and known to VOD (or not answered about yet)."""
        return [job for job in self.jobs if not job.finished and job.status != NOT_FOUND]

    @property
    def finished(self) -> list[AIJob]:
        return [job for job in self.jobs if job.finished]

    @property
    def all_succeeded(self) -> bool:
        return all(job.succeeded for job in self.jobs)

    @property
    def results(self) -> dict[str, AIResult]:
        """The typed result of each successful job whose result could be read, by job id."""
        return {job.job_id: job.result for job in self.jobs if job.result is not None}


# --- validation ------------------------------------------------------------------------------


def parse_types(types: str | Iterable[str]) -> list[str]:
    """``"AIVideoTag,AIMediaDNA"`` or a list of names -> the distinct names, in order."""
    names = types.split(",") if isinstance(types, str) else list(types)
    found: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if name not in TYPE_REGIONS:
            raise AIJobInputError(f"unknown AI job type {name!r}; known: {', '.join(TYPE_REGIONS)}")
        if name not in found:
            found.append(name)
    if not found:
        raise AIJobInputError(f"no AI job type given; known: {', '.join(TYPE_REGIONS)}")
    return found


def check_region(region: str, types: Sequence[str]) -> None:
    """Raise unless ``region`` offers every job type in ``types``."""
    for name in types:
        regions = TYPE_REGIONS[name]
        if region not in regions:
            raise AIJobInputError(
                f"{name} is not offered in region {region!r}; use one of: "
                f"{', '.join(sorted(regions))}"
            )


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise AIJobInputError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise AIJobInputError(f"{what} must be a JSON object, got {text.strip()[:40]!r}")
    return value


def check_user_data(text: str) -> None:
    """UserData must be a JSON object; its ``Extend`` (object or string) at most 512 bytes."""
    data = _json_object(text, "UserData")
    extend = data.get("Extend")
    if extend is None:
        return
    encoded = (
        extend if isinstance(extend, str) else json.dumps(extend, separators=(",", ":"))
    ).encode("utf-8")
    if len(encoded) > MAX_EXTEND_BYTES:
        raise AIJobInputError(
            f"UserData.Extend is {len(encoded)} bytes; VOD allows at most {MAX_EXTEND_BYTES}"
        )


# --- the API ---------------------------------------------------------------------------------


def submit_ai_job(
    media_id: str,
    types: str | Iterable[str],
    *,
    config: str | None = None,
    user_data: str | None = None,
    region: str = DEFAULT_REGION,
    endpoint: str | None = None,
    credentials: Credentials | None = None,
) -> list[SubmittedJob]:
    """Submit AI jobs of ``types`` for the video ``media_id``; return the jobs created.

    config / user_data: JSON objects as text, sent as given (``{"AIVideoTag":
        {"AnalyseTypes": "ASR,OCR"}}``; ``{"Extend": {...}}``, which comes back in the events).
    endpoint: ``host[:port]``, optionally with ``http://``; default: the region's endpoint.
    credentials: default ``Credentials(default_chain=True)``.
    """
    media_id = media_id.strip()
    if not media_id:
        raise AIJobInputError("a media id is required")
    names = parse_types(types)
    check_region(region, names)
    if config is not None:
        _json_object(config, "Config")
    if user_data is not None:
        check_user_data(user_data)
    client = _client(region, endpoint, credentials)

    from alibabacloud_vod20170321.models import SubmitAIJobRequest

    request = SubmitAIJobRequest(
        media_id=media_id, types=",".join(names), config=config, user_data=user_data
    )
    body = _call("SubmitAIJob", lambda: client.submit_aijob(request)).body
    listed = body.aijob_list.aijob if body.aijob_list is not None else None
    return [
        SubmittedJob(job_id=job.job_id or "", type=job.type or "", media_id=job.media_id or "")
        for job in listed or []
    ]


def list_ai_jobs(
    job_ids: Iterable[str],
    *,
    region: str = DEFAULT_REGION,
    endpoint: str | None = None,
    credentials: Credentials | None = None,
) -> list[AIJob]:
    """The status (and, when done, the typed result) of each job, in the order asked.

    ListAIJob takes at most 10 ids, so more are asked in several calls. An id VOD does not
    know is reported with status ``not_found``.
    """
    ids = job_ids_of(job_ids)
    client = _client(region, endpoint, credentials)
    found: dict[str, AIJob] = {}
    for chunk in _chunks(ids, MAX_IDS_PER_CALL):
        found.update(_list_chunk(client, chunk))
    return [found[i] for i in ids]


def wait_for_jobs(
    job_ids: Iterable[str],
    *,
    timeout: float,
    region: str = DEFAULT_REGION,
    endpoint: str | None = None,
    credentials: Credentials | None = None,
    policy: PollPolicy | None = None,
    on_progress: Callable[[WaitResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Ask ListAIJob about the jobs until every one has finished (success or fail), at most
    ``timeout`` seconds; return each job as last seen, typed results included.

    Rounds of calls, paced by ``policy`` (``PollPolicy()``): each round asks about the jobs not
    finished yet, 10 ids a call. It returns early, after the round, when VOD does not know an id
    (``not_found``: it can never finish). When the time is out, one last round is made at the
    deadline, then it returns with ``timed_out`` if jobs are still running: a timeout is an
    answer, not an exception.

    A throttling answer (``VodApiError.throttled``) is waited out and the call made again;
    any other refusal, or an unreachable endpoint, raises ``VodApiError``.

    on_progress: called with the state so far after every answer.
    clock, sleep: the monotonic clock and the sleep used for every wait (tests pass fakes).
    """
    ids = job_ids_of(job_ids)
    if not (math.isfinite(timeout) and timeout > 0):
        raise AIJobInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    policy = policy if policy is not None else PollPolicy()
    client = _client(region, endpoint, credentials)

    start = clock()
    deadline = start + timeout
    latest = {i: AIJob(job_id=i, status=UNSEEN) for i in ids}
    last_call: float | None = None
    throttled = 0  # throttling answers in a row

    def state(*, timed_out: bool = False) -> WaitResult:
        jobs = tuple(latest[i] for i in ids)
        return WaitResult(jobs=jobs, timed_out=timed_out, elapsed=clock() - start)

    round_number = 0
    while True:
        round_number += 1
        pending = [i for i in ids if not latest[i].finished]
        for chunk in _chunks(pending, MAX_IDS_PER_CALL):
            while True:
                if last_call is not None:
                    gap = last_call + policy.call_spacing - clock()
                    if gap > 0:
                        sleep(gap)
                last_call = clock()
                try:
                    latest.update(_list_chunk(client, chunk))
                except VodApiError as exc:
                    if not exc.throttled:
                        raise
                    throttled += 1
                    delay = max(policy.throttle.delay(throttled), exc.retry_after or 0.0)
                    left = deadline - clock()
                    if delay >= left:  # the answer would come too late: the time is out
                        if left > 0:
                            sleep(left)
                        return state(timed_out=True)
                    sleep(delay)
                    continue
                throttled = 0
                break
            if on_progress is not None:
                on_progress(state())
        done = state()
        if not done.running or done.not_found:
            return done
        left = deadline - clock()
        if left <= 0:
            return state(timed_out=True)
        sleep(min(policy.interval(round_number), left))


def job_ids_of(job_ids: Iterable[str]) -> list[str]:
    """The distinct ids, in order, blanks dropped; at least one (else AIJobInputError)."""
    ids = list(dict.fromkeys(i.strip() for i in job_ids if i.strip()))
    if not ids:
        raise AIJobInputError("at least one job id is required")
    return ids


def _list_chunk(client: Any, ids: Sequence[str]) -> dict[str, AIJob]:
    """One ListAIJob call about at most 10 ids: each as VOD reports it, or ``not_found``."""
    from alibabacloud_vod20170321.models import ListAIJobRequest

    request = ListAIJobRequest(job_ids=",".join(ids))
    body = _call("ListAIJob", functools.partial(client.list_aijob, request)).body
    found: dict[str, AIJob] = {}
    for job in body.aijob_list.aijob if body.aijob_list and body.aijob_list.aijob else []:
        if job.job_id in ids:
            found[job.job_id] = _ai_job(job)
    return {i: found.get(i) or AIJob(job_id=i, status=NOT_FOUND) for i in ids}


def _ai_job(job: Any) -> AIJob:
    """An AIJob from the SDK's ListAIJobResponseBodyAIJobListAIJob."""
    result: AIResult | None = None
    error: str | None = None
    reader = RESULT_READERS.get(job.type or "")
    if (job.status or "").lower() == SUCCESS and job.data and reader is not None:
        try:
            result = reader(job.data)
        except ResultFormatError as exc:
            error = str(exc)
    return AIJob(
        job_id=job.job_id,
        status=job.status or "",
        type=job.type,
        media_id=job.media_id,
        code=job.code,
        message=job.message,
        creation_time=job.creation_time,
        complete_time=job.complete_time,
        result=result,
        result_error=error,
        data=job.data,
    )


_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _client(region: str, endpoint: str | None, credentials: Credentials | None) -> Any:
    """The SDK client. Its packages load only here, so the daemon does not pay for them."""
    creds = credentials if credentials is not None else Credentials(default_chain=True)
    if not creds.default_chain and not creds.has_access_key:
        raise AIJobInputError(
            "no credentials: an AccessKey id and secret, or the default credential chain"
        )
    protocol, host = "https", endpoint
    if endpoint is not None:
        scheme, sep, rest = endpoint.partition("://")
        if sep:
            if scheme not in ("http", "https") or not rest:
                raise AIJobInputError("endpoint must be host[:port] or http(s)://host[:port]")
            protocol, host = scheme, rest
        host = host.rstrip("/") if host else host
        if not host:
            raise AIJobInputError("endpoint is empty")

    from alibabacloud_tea_openapi.utils_models import Config
    from alibabacloud_vod20170321.client import Client

    settings = Config(
        region_id=region,
        endpoint=host,
        protocol=protocol,
        connect_timeout=TIMEOUT_MS,
        read_timeout=TIMEOUT_MS,
    )
    if creds.default_chain:
        from alibabacloud_credentials.client import Client as CredentialClient

        settings.credential = CredentialClient()
    else:
        settings.access_key_id = creds.access_key_id
        settings.access_key_secret = creds.access_key_secret
        settings.security_token = creds.security_token or None
    return Client(settings)


def _call(action: str, request: Callable[[], _T]) -> _T:
    """Make one SDK call, turning its exceptions into VodApiError."""
    from alibabacloud_credentials.exceptions import CredentialException
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
    from Tea.exceptions import TeaException, UnretryableException

    try:
        return request()
    except AlibabaCloudException as exc:  # the service answered with an error
        data = exc.data if isinstance(exc.data, dict) else {}
        retry_after_ms = getattr(exc, "retry_after", None)  # x-acs-retry-after, milliseconds
        raise VodApiError(
            action,
            _one_line(str(data.get("Message") or exc.message or "")),
            code=_present(exc.code),
            request_id=_present(exc.request_id) or _present(data.get("RequestId")),
            status_code=exc.status_code,
            retry_after=retry_after_ms / 1000 if isinstance(retry_after_ms, int) else None,
        ) from None
    except UnretryableException as exc:  # no reply: refused, timed out, TLS, DNS
        raise VodApiError(action, _unreachable(exc.inner_exception)) from None
    except (TeaException, CredentialException) as exc:
        raise VodApiError(action, _one_line(str(getattr(exc, "message", None) or exc))) from None


def _present(value: Any) -> str:
    """A field of an error reply as text: the SDK formats a missing one as ``"None"``."""
    text = str(value or "")
    return "" if text == "None" else text


def _unreachable(cause: BaseException) -> str:
    """A short reason for a failed connection; the library's own text is a long repr."""
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", str(cause))
    detail = f": {errno.group(0).strip()}" if errno else ""
    return f"cannot reach the endpoint ({type(cause).__name__}{detail})"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
