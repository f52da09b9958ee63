"""The Containerfile and the Kubernetes sidecar example: what they promise, and the sidecar's
configuration run for real (events POSTed to the app over localhost, signed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import Harness, event_body, wait_for
from http_app import App, serve
from service_process import Daemon

from vod_events.config import from_dict, load, parse_listen
from vod_events.events import VodEvent
from vod_events.handlers import SIGNATURE_HEADER
from vod_events.mns_server import LocalMNSServer
from vod_events.router import HandlerContext
from vod_events.service.health import Health
from vod_events.service.ops import OpsServer
from vod_events.transports.mns import MNSTransport

REPO = Path(__file__).parent.parent
CONTAINERFILE = REPO / "Containerfile"
POD = REPO / "deploy" / "kubernetes" / "pod.yaml"


class ThreadKiller(BaseException):
    """Not an Exception, nor SystemExit: stands for a bug of ours that ends a thread."""


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    found = [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]
    stages = [i for i, (name, _) in enumerate(found) if name == "FROM"]
    return [(name, args) for name, args in found[stages[-1] :]]


def instruction(name: str) -> str:
    [args] = [a for n, a in instructions() if n == name]
    return args


def test_image_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = instruction("USER").partition(":")
    assert user.isdigit() and int(user) != 0
    assert group.isdigit() and int(group) != 0


def test_entrypoint_is_exec_form_so_sigterm_reaches_the_daemon() -> None:
    assert json.loads(instruction("ENTRYPOINT")) == ["vod-events", "consume"]
    assert json.loads(instruction("CMD")) == ["--config", "/etc/vod-events/config.toml"]


def test_no_secret_is_baked_into_the_image() -> None:
    text = CONTAINERFILE.read_text()
    for name, args in instructions():
        if name in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"SECRET|ACCESS_KEY|PASSWORD|TOKEN", args, re.I), args
    default_config = (REPO / "deploy" / "container" / "config.toml").read_text()
    assert "access_key" not in default_config.replace("# ", "").split("[mns]")[1]
    assert "COPY . " not in text  # only named paths: no stray .env or credentials file


def test_state_volume_is_where_the_default_config_keeps_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOD_EVENTS_MNS_ENDPOINT", "http://127.0.0.1:9876")
    config = load(REPO / "deploy" / "container" / "config.toml")
    assert json.loads(instruction("VOLUME")) == [str(config.state_dir)]
    assert parse_listen(config.ops.listen) == ("0.0.0.0", int(instruction("EXPOSE")))


def healthcheck_command(url: str) -> list[str]:
    """The HEALTHCHECK's exec-form command, aimed at `url` instead of 127.0.0.1:9400."""
    args = instruction("HEALTHCHECK")
    command: list[str] = json.loads(args.split("CMD", 1)[1])
    assert command[0] == "python"  # no curl in a slim image
    return [sys.executable, *[c.replace("http://127.0.0.1:9400", url) for c in command[1:]]]


def test_healthcheck_command_follows_healthz(harness: Callable[..., Harness]) -> None:
    h = harness()

    @h.router.on()
    def exits(event: VodEvent, ctx: HandlerContext) -> None:
        raise ThreadKiller  # escapes the processor: the worker thread dies

    server = OpsServer("127.0.0.1:0", h.stats, Health(h.consumer)).start()
    try:
        h.start()
        wait_for(lambda: h.stats.get("empty_polls") >= 1, what="a receive")
        healthy = subprocess.run(
            healthcheck_command(server.url), check=False, capture_output=True, timeout=30
        )
        assert healthy.returncode == 0
        h.put(event_body("job-1"))  # its handler kills a worker thread
        assert h.thread is not None
        h.thread.join(15)
        unhealthy = subprocess.run(
            healthcheck_command(server.url), check=False, capture_output=True, timeout=30
        )
        assert unhealthy.returncode == 1
        assert b"503" in unhealthy.stderr
    finally:
        server.close()


# ------------------------------------------------------------ the Kubernetes example

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing")


def pod_objects() -> dict[str, dict[str, Any]]:
    """The example's objects by kind, decoded offline by kubectl (no cluster needed)."""
    done = subprocess.run(
        ["kubectl", "label", "--local", "-f", str(POD), "checked=yes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    decoder = json.JSONDecoder()
    objects, text, index = {}, done.stdout, 0
    while index < len(text.rstrip()):
        obj, index = decoder.raw_decode(text, index)
        objects[obj["kind"]] = obj
        while index < len(text) and text[index].isspace():
            index += 1
    return objects


@needs_kubectl
def test_pod_runs_the_sidecar_hardened_with_secrets_from_a_secret() -> None:
    objects = pod_objects()
    spec = objects["Pod"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    sidecar = next(c for c in spec["containers"] if c["name"] == "vod-events")
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["allowPrivilegeEscalation"] is False
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in sidecar["env"]}
    assert set(secret_env) == {
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "VOD_EVENTS_HANDLERS_0_SECRET",
    }
    assert all("value" not in e for e in sidecar["env"])  # nothing literal
    port = sidecar["ports"][0]["containerPort"]
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    mounts = {m["mountPath"] for m in sidecar["volumeMounts"]}
    assert {"/etc/vod-events", "/var/lib/vod-events", "/tmp"} <= mounts

    config_text = objects["ConfigMap"]["data"]["config.toml"]
    config = from_dict(tomllib.loads(config_text), "pod.yaml", {})
    assert parse_listen(config.ops.listen) == ("0.0.0.0", port)
    [handler] = config.handlers
    app = next(c for c in spec["containers"] if c["name"] == "app")
    assert handler.type == "http"
    assert handler.url.startswith(f"http://127.0.0.1:{app['ports'][0]['containerPort']}/")
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > config.consumer.shutdown_timeout


@needs_kubectl
def test_the_sidecar_config_forwards_signed_events_to_the_app(tmp_path: Path) -> None:
    """The ConfigMap's config, run for real: MNS and the app replaced by local ones."""
    config_text = pod_objects()["ConfigMap"]["data"]["config.toml"]
    config = tmp_path / "config.toml"
    config.write_text(config_text.replace("/var/lib/vod-events", str(tmp_path / "state")))
    config.chmod(0o600)
    key_id, key_secret, webhook_secret = "pod-key", "pod-secret-PLANTED", "webhook-PLANTED"
    with (
        LocalMNSServer(access_key_id=key_id, access_key_secret=key_secret) as mns,
        serve(App()) as app,
    ):
        mns.create_queue("vod-events")
        MNSTransport(
            mns.endpoint, "vod-events", access_key_id=key_id, access_key_secret=key_secret
        ).send(event_body("job-7"))
        env = {
            # What the Pod's Secret provides:
            "ALIBABA_CLOUD_ACCESS_KEY_ID": key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": key_secret,
            "VOD_EVENTS_HANDLERS_0_SECRET": webhook_secret,
            # Local stand-ins for the real endpoint, the app's port and the pod's port 9400:
            "VOD_EVENTS_MNS_ENDPOINT": mns.endpoint,
            "VOD_EVENTS_HANDLERS_0_URL": app.url,
            "VOD_EVENTS_OPS_LISTEN": "127.0.0.1:0",
        }
        with Daemon(config, env) as daemon:
            wait_for(lambda: len(app.requests) == 1, timeout=20, what="the POST")
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0
    [request] = app.requests
    assert json.loads(request.body)["job_id"] == "job-7"
    expected = hmac.new(webhook_secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header(SIGNATURE_HEADER) == f"sha256={expected}"
    assert "PLANTED" not in daemon.output
