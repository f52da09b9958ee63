"""SubmitAIJob / ListAIJob through the real alibabacloud-vod20170321 SDK, against a local fake
of the VOD OpenAPI endpoint (tests/fake_vod.py): what went over the wire, the split into calls
of at most 10 ids, typed results, service errors as one line, and input validation before any
request. Waiting for jobs (--wait): tests/test_aijobs_wait.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from fake_vod import FakeVod, Reply

from vod_events import cli
from vod_events.aijobs import (
    AIJobInputError,
    Credentials,
    VodApiError,
    list_ai_jobs,
    submit_ai_job,
)
from vod_events.results import DnaMatch, DnaSegment, MediaDnaResult, VideoTag, VideoTagResult

KEY_ID = "LTAI-test-key-id"
KEY_SECRET = "test-secret-do-not-print"
# The library takes a value; the commands resolve one (vod_events.config.credentials).
CREDENTIALS = Credentials(KEY_ID, KEY_SECRET)


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
    monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)


def submitted(params: dict[str, str]) -> Reply:
    jobs = [
        {"JobId": f"job-{kind}", "MediaId": params["MediaId"], "Type": kind}
        for kind in params["Types"].split(",")
    ]
    return 200, {"RequestId": "req-submit", "AIJobList": {"AIJob": jobs}}


TAG_DATA = {"Keyword": [{"Tag": "cat", "Times": ["1000", "2500"]}], "Category": [{"Tag": "pets"}]}
DNA_DATA = {
    "VideoDNA": [
        {
            "PrimaryKey": "older-video",
            "Similarity": "0.99",
            "Detail": [
                {
                    "Input": {"Start": "0.0", "Duration": "14.0"},
                    "Duplication": {"Start": "0.5", "Duration": "14.4"},
                }
            ],
        }
    ]
}


def listed(params: dict[str, str]) -> Reply:
    """Jobs named tag-*, dna-*, run-* exist; any other id does not."""
    jobs, missing = [], []
    for job_id in params["JobIds"].split(","):
        if job_id.startswith("tag-"):
            jobs.append(
                {"JobId": job_id, "Type": "AIVideoTag", "MediaId": "m-1", "Status": "success",
                 "Code": "0", "Message": "OK", "Data": json.dumps(TAG_DATA),
                 "CreationTime": "2024-05-01T10:00:00Z", "CompleteTime": "2024-05-01T10:02:00Z"}
            )  # fmt: skip
        elif job_id.startswith("dna-"):
            jobs.append(
                {"JobId": job_id, "Type": "AIMediaDNA", "MediaId": "m-2", "Status": "success",
                 "Data": json.dumps(DNA_DATA)}
            )  # fmt: skip
        elif job_id.startswith("run-"):
            jobs.append({"JobId": job_id, "Type": "AIVideoTag", "Status": "processing"})
        else:
            missing.append(job_id)
    return 200, {
        "RequestId": "req-list",
        "AIJobList": {"AIJob": jobs},
        "NonExistAIJobIds": {"String": missing},
    }


# --- SubmitAIJob -----------------------------------------------------------------------------


def test_submit_sends_the_parameters_over_the_wire(vod: FakeVod, env_credentials: None) -> None:
    vod.routes["SubmitAIJob"] = submitted
    config = '{"AIVideoTag": {"AnalyseTypes": "ASR,OCR"}}'
    user_data = '{"Extend": {"localId": "42", "note": "café"}}'

    jobs = submit_ai_job(
        "media-1",
        "AIVideoTag, AIMediaDNA",
        config=config,
        user_data=user_data,
        endpoint=vod.endpoint,
        credentials=CREDENTIALS,
    )

    assert [(j.job_id, j.type, j.media_id) for j in jobs] == [
        ("job-AIVideoTag", "AIVideoTag", "media-1"),
        ("job-AIMediaDNA", "AIMediaDNA", "media-1"),
    ]
    [call] = vod.calls
    assert call.action == "SubmitAIJob"
    assert call.version == "2017-03-21"
    assert call.params == {
        "MediaId": "media-1",
        "Types": "AIVideoTag,AIMediaDNA",
        "Config": config,
        "UserData": user_data,
    }
    assert f"Credential={KEY_ID}," in call.authorization


def test_submit_command_prints_the_job_list_as_json(
    vod: FakeVod, env_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    vod.routes["SubmitAIJob"] = submitted
    code = cli.main(
        [
            *("submit-ai-job", "--media-id", "media-7", "--types", "AIMediaDNA"),
            *("--region", "ap-southeast-1", "--endpoint", vod.endpoint),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out) == [
        {"job_id": "job-AIMediaDNA", "type": "AIMediaDNA", "media_id": "media-7"}
    ]
    assert vod.calls[0].params == {"MediaId": "media-7", "Types": "AIMediaDNA"}


def test_command_line_credentials_override_the_environment(
    vod: FakeVod, env_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    vod.routes["SubmitAIJob"] = submitted
    code = cli.main(
        [
            *("submit-ai-job", "--media-id", "m", "--types", "AIVideoTag"),
            *("--endpoint", vod.endpoint, "--access-key-id", "flag-key-id"),
            *("--access-key-secret", "flag-secret"),
        ]
    )
    assert code == 0
    assert "Credential=flag-key-id," in vod.calls[0].authorization


def chain_command(vod: FakeVod, arguments: list[str], **environ: str) -> str:
    """Run `vod-events` with the default chain in a new process, whose environment is all
    the chain sees: alibabacloud-credentials reads its variables once, when imported.
    Returns the Credential= of the one request made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update(
        ALIBABA_CLOUD_CREDENTIALS_FILE=os.devnull,  # no profile of the host's user
        ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true",
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        **environ,
    )
    done = subprocess.run(
        [sys.executable, "-m", "vod_events", *arguments, "--endpoint", vod.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [call] = vod.calls
    return call.authorization.partition("Credential=")[2].partition(",")[0]


def test_default_credential_chain_reads_the_environment(vod: FakeVod) -> None:
    vod.routes["ListAIJob"] = listed
    used = chain_command(
        vod,
        ["ai-jobs", "tag-1", "--credentials", "default"],
        ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=KEY_SECRET,
    )
    assert used == KEY_ID


def test_default_credential_chain_ignores_the_access_key_flags(vod: FakeVod) -> None:
    vod.routes["ListAIJob"] = listed
    arguments = ["ai-jobs", "tag-1", "--credentials", "default", "--access-key-id", "flag-id"]
    used = chain_command(
        vod,
        [*arguments, "--access-key-secret", "flag-secret"],
        ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=KEY_SECRET,
    )
    assert used == KEY_ID  # the chain, when chosen, replaces every static source


def test_service_error_is_one_line_with_code_and_request_id(
    vod: FakeVod, env_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    vod.routes["SubmitAIJob"] = lambda params: (
        403,
        {
            "Code": "Forbidden.RAM",
            "Message": "User not authorized to operate\non the specified resource.",
            "RequestId": "25818875-5F78-4A13-BEF6-D73936",
        },
    )
    code = cli.main(
        ["submit-ai-job", "--media-id", "m", "--types", "AIVideoTag", "--endpoint", vod.endpoint]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err == (
        "vod-events submit-ai-job: SubmitAIJob failed: Forbidden.RAM (HTTP 403), request id "
        "25818875-5F78-4A13-BEF6-D73936: User not authorized to operate on the specified "
        "resource.\n"
    )
    assert KEY_SECRET not in captured.err


def test_service_error_carries_its_details_in_the_api(vod: FakeVod, env_credentials: None) -> None:
    vod.routes["ListAIJob"] = lambda params: (
        400,
        {"Code": "InvalidParameter", "Message": "JobIds is invalid", "RequestId": "req-9"},
    )
    with pytest.raises(VodApiError) as caught:
        list_ai_jobs(["x"], endpoint=vod.endpoint, credentials=CREDENTIALS)
    error = caught.value
    assert (error.action, error.code, error.request_id, error.status_code) == (
        "ListAIJob",
        "InvalidParameter",
        "req-9",
        400,
    )
    assert error.message == "JobIds is invalid"


def test_unreachable_endpoint_is_one_line(
    env_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    code = cli.main(["ai-jobs", "tag-1", "--endpoint", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("vod-events ai-jobs: ListAIJob failed: cannot reach the endpoint (")
    assert "[Errno 111] Connection refused" in err
    assert err.count("\n") == 1


# --- validation: nothing is sent -------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--types", "AIVideoTag,AIFaceSearch"], "unknown AI job type 'AIFaceSearch'"),
        (["--types", " , "], "no AI job type given"),
        (["--types", "AIVideoTag", "--config", "{not json"], "Config is not valid JSON"),
        (["--types", "AIVideoTag", "--config", '["AIVideoTag"]'], "Config must be a JSON object"),
        (["--types", "AIVideoTag", "--user-data", "{"], "UserData is not valid JSON"),
        (
            ["--types", "AIVideoTag", "--user-data", json.dumps({"Extend": {"k": "x" * 505}})],
            "UserData.Extend is 513 bytes; VOD allows at most 512",
        ),
        (
            ["--types", "AIMediaDNA,AIVideoTag", "--region", "ap-southeast-1"],
            "AIVideoTag is not offered in region 'ap-southeast-1'; use one of: cn-beijing, "
            "cn-shanghai",
        ),
        (["--types", "AIMediaDNA", "--region", "eu-central-1"], "AIMediaDNA is not offered"),
        (["--types", "AIVideoTag", "--media-id", " "], "a media id is required"),
        (["--types", "AIVideoTag", "--endpoint", "ftp://host"], "endpoint must be host[:port]"),
    ],
)
def test_invalid_submissions_exit_2_before_any_request(
    vod: FakeVod,
    env_credentials: None,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    vod.routes["SubmitAIJob"] = submitted
    base = ["submit-ai-job", "--media-id", "media-1", "--endpoint", vod.endpoint]
    code = cli.main(base + arguments)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("vod-events submit-ai-job: ")
    assert message in err
    assert vod.calls == []


def test_extend_of_exactly_512_bytes_is_accepted(vod: FakeVod, env_credentials: None) -> None:
    vod.routes["SubmitAIJob"] = submitted
    extend = "é" * 256  # 512 bytes of UTF-8, sent as a string
    submit_ai_job(
        "m",
        ["AIVideoTag"],
        user_data=json.dumps({"Extend": extend}),
        endpoint=vod.endpoint,
        credentials=CREDENTIALS,
    )
    assert json.loads(vod.calls[0].params["UserData"]) == {"Extend": extend}


def test_missing_credentials_exit_2_before_any_request(
    vod: FakeVod, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", raising=False)
    code = cli.main(["ai-jobs", "tag-1", "--endpoint", vod.endpoint])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("vod-events ai-jobs: no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID")
    assert "--access-key-id" in err
    assert "--credentials default" in err
    assert vod.calls == []


def test_no_usable_job_id_is_an_input_error(vod: FakeVod) -> None:
    with pytest.raises(AIJobInputError, match="at least one job id"):
        list_ai_jobs([" ", ""], endpoint=vod.endpoint, credentials=Credentials("id", "secret"))
    assert vod.calls == []


# --- ListAIJob -------------------------------------------------------------------------------


def test_list_splits_into_calls_of_at_most_ten_ids(vod: FakeVod, env_credentials: None) -> None:
    vod.routes["ListAIJob"] = listed
    ids = [f"tag-{i}" for i in range(23)]

    jobs = list_ai_jobs(ids, endpoint=vod.endpoint, credentials=CREDENTIALS)

    assert vod.actions() == ["ListAIJob"] * 3
    assert [c.params["JobIds"].split(",") for c in vod.calls] == [ids[:10], ids[10:20], ids[20:]]
    assert [j.job_id for j in jobs] == ids
    assert {j.status for j in jobs} == {"success"}


def test_list_decodes_results_into_the_event_result_types(
    vod: FakeVod, env_credentials: None
) -> None:
    vod.routes["ListAIJob"] = listed

    tag, dna, running, unknown = list_ai_jobs(
        ["tag-1", "dna-1", "run-1", "gone-1", "tag-1"],
        endpoint=vod.endpoint,
        credentials=CREDENTIALS,
    )

    assert vod.calls[0].params == {"JobIds": "tag-1,dna-1,run-1,gone-1"}  # duplicates dropped
    assert tag.type == "AIVideoTag"
    assert tag.complete_time == "2024-05-01T10:02:00Z"
    assert tag.result == VideoTagResult(
        keyword=[VideoTag(tag="cat", times_ms=[1000, 2500])], category=[VideoTag(tag="pets")]
    )
    assert dna.result == MediaDnaResult(
        matches=[
            DnaMatch(
                primary_key="older-video",
                similarity=0.99,
                segments=[
                    DnaSegment(
                        input_start_s=0.0,
                        input_duration_s=14.0,
                        duplicate_start_s=0.5,
                        duplicate_duration_s=14.4,
                    )
                ],
            )
        ]
    )
    assert (running.status, running.result) == ("processing", None)
    assert (unknown.status, unknown.type) == ("not_found", None)


def test_unreadable_result_keeps_the_data_and_says_why(vod: FakeVod, env_credentials: None) -> None:
    vod.routes["ListAIJob"] = lambda params: (
        200,
        {"AIJobList": {"AIJob": [{"JobId": "j", "Type": "AIMediaDNA", "Status": "success",
                                  "Data": '{"VideoDNA": "not a list"}'}]}},
    )  # fmt: skip
    [job] = list_ai_jobs(["j"], endpoint=vod.endpoint, credentials=CREDENTIALS)
    assert job.result is None
    assert job.result_error == "VideoDNA is a string, not a list"
    assert job.data == '{"VideoDNA": "not a list"}'


def test_ai_jobs_command_prints_status_and_result_per_job(
    vod: FakeVod, env_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    vod.routes["ListAIJob"] = listed
    code = cli.main(["ai-jobs", "tag-1", "missing-1", "--endpoint", vod.endpoint])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(j["job_id"], j["status"]) for j in printed] == [
        ("tag-1", "success"),
        ("missing-1", "not_found"),
    ]
    assert printed[0]["result"]["keyword"] == [
        {"tag": "cat", "times_ms": [1000, 2500], "face_url": None}
    ]
    assert printed[1]["result"] is None
