"""Two replicas behind nginx with deploy/nginx.conf (least connections), on loopback: streams pass
through as they are written, and a new stream goes to the replica that has none."""

import re
import shutil
import subprocess
import time

import pytest
import requests

from bench.servers import free_port
from tests.conftest import OUTPUT, TINY_FLAGS, own_servers
from tests.support import sse_client
from tests.support.http_helpers import LONG_STREAM, TIMEOUT, health
from tests.support.server_process import ROOT

# Slow: two servers of its own behind nginx.
pytestmark = pytest.mark.slow

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def replicas():
    launched = own_servers({"replica-1": TINY_FLAGS, "replica-2": TINY_FLAGS})
    yield list(next(launched).values())
    next(launched, None)


@pytest.fixture(scope="module")
def balancer(replicas, tmp_path_factory):
    """nginx on the documented configuration, its ports swapped for the replicas' and a free one."""
    prefix = tmp_path_factory.mktemp("nginx")
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    ports = iter(server.base_url.rsplit(":", 1)[1] for server in replicas)
    config = re.sub(r"server 127\.0\.0\.1:880[12];", lambda _: f"server 127.0.0.1:{next(ports)};", config)
    port = free_port()
    config = config.replace("listen 127.0.0.1:8800;", f"listen 127.0.0.1:{port};")
    (prefix / "nginx.conf").write_text(config)
    log = (OUTPUT / "nginx.log").open("wb")
    directives = f"daemon off; pid {prefix}/nginx.pid; error_log stderr;"
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", directives], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=15)


def test_streams_pass_through_and_spread_over_the_replicas(replicas, balancer):
    streams = []
    try:
        for _ in replicas:
            # A short request between the streams: round-robin would then send the second stream
            # to the replica already streaming; least connections sends it to the idle one.
            assert requests.post(f"{balancer}/chat", json={"query": "hi", "max_tokens": 2}, timeout=TIMEOUT).ok
            response = requests.post(f"{balancer}/v1/chat/completions", json=LONG_STREAM, stream=True, timeout=TIMEOUT)
            assert response.status_code == 200
            # Kept: a stream's reader closes its response when it is dropped.
            streams.append((response, sse_client.stream(response)))
            for _ in range(5):  # events arrive while the reply is still being written
                assert next(streams[-1][1]).data != "[DONE]"
        assert [health(server)["engine"]["active"] for server in replicas] == [1, 1]
    finally:
        for response, _ in streams:
            response.close()
