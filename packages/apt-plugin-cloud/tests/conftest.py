"""Fixtures: synthetic checkpoints, a real SeaweedFS, protocol-level OSS/Hub/ModelScope servers, a fault proxy."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from cloud_servers.fault_proxy import FaultProxy
from cloud_servers.seaweed import start_seaweed
from cloud_testlib import HF_TOKEN_VALUE, HF_USER, MB, MS_TOKEN, MS_USER, OSS_KEY_ID, OSS_SECRET, write_checkpoint

from apt_plugin_cloud.retry import RetryPolicy
from apt_plugin_cloud.transfer import TransferOptions


def pytest_configure(config):
    # huggingface_hub 2.x passes raw bytes to httpx2 the deprecated way; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:httpx2.*")


@pytest.fixture(autouse=True)
def cloud_plugin_manager(apt_pm, monkeypatch, tmp_path):
    """Every test sees a plugin manager with only the core and this plugin, and no user config."""
    import apt_plugin_cloud.plugin

    # Never reach a real cloud or pick up a developer's credentials (scoped to these tests only).
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "MODELSCOPE_API_TOKEN", "OSS_ACCESS_KEY_ID",
                 "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("APT_CONFIG_HOME", str(tmp_path / "apt-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # the hash cache lives there
    monkeypatch.chdir(tmp_path)
    return apt_pm(apt_plugin_cloud.plugin)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return write_checkpoint(tmp_path / "ckpt")


@pytest.fixture
def opts() -> TransferOptions:
    """Small chunks so a few-MB checkpoint has many objects; fast retries."""
    return TransferOptions(concurrency=4, progress=False, chunk_size=1 * MB,
                           retry=RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=0.5))


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    return seaweed


@pytest.fixture
def s3_url(s3_env) -> str:
    """A fresh prefix in a test bucket on SeaweedFS, with the endpoint in the URL."""
    s3_env.create_bucket("apt-tests")
    return f"s3://apt-tests/{uuid.uuid4().hex[:10]}?endpoint_url={s3_env.endpoint}"


@pytest.fixture
def fault_proxy(seaweed):
    port = int(seaweed.endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy(port)
    yield proxy
    proxy.stop()




@pytest.fixture(scope="session")
def oss_server():
    from cloud_servers.oss_server import start_oss

    server = start_oss(OSS_KEY_ID, OSS_SECRET, ["apt-oss"])
    yield server
    server.stop()


@pytest.fixture
def oss_url(oss_server, monkeypatch) -> str:
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", OSS_KEY_ID)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", OSS_SECRET)
    return f"oss://apt-oss/{uuid.uuid4().hex[:10]}?endpoint={oss_server.endpoint}"




@pytest.fixture(scope="session")
def hub_server():
    from cloud_servers.hub_server import HubServer

    server = HubServer({HF_TOKEN_VALUE: HF_USER})
    yield server
    server.stop()


@pytest.fixture
def hf_url(hub_server, monkeypatch) -> str:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN_VALUE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return f"hf://{HF_USER}/backup-{uuid.uuid4().hex[:8]}?endpoint={hub_server.endpoint}"




@pytest.fixture(scope="session")
def modelscope_server():
    from cloud_servers.modelscope_server import ModelScopeServer

    server = ModelScopeServer({MS_TOKEN: MS_USER})
    yield server
    server.stop()


@pytest.fixture
def modelscope_url(modelscope_server, monkeypatch, tmp_path) -> str:
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", MS_TOKEN)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    return f"modelscope://{MS_USER}/backup-{uuid.uuid4().hex[:8]}?endpoint={modelscope_server.endpoint}"
