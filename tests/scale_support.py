"""Real processes for the scale-out tests: redis-server, a moto S3 server, API servers, workers.

Everything binds 127.0.0.1 on a free port and lives in a temp dir; every process is killed at
teardown. moto in server mode is a *stand-in* for a real S3-compatible store (MinIO, AWS): it
speaks the S3 HTTP API to boto3 exactly as one would, but keeps objects in memory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.service_support import free_port

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class Redis:
    url: str
    port: int
    proc: subprocess.Popen


@contextmanager
def redis_server(tmp: Path) -> Iterator[Redis]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp), "--save", "",
           "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        yield Redis(url=f"redis://127.0.0.1:{port}/0", port=port, proc=proc)
    finally:
        client.close()
        proc.kill()
        proc.wait(10)


@dataclass
class S3:
    endpoint: str
    proc: subprocess.Popen


@contextmanager
def moto_s3() -> Iterator[S3]:
    """moto's S3 in server mode: a stand-in for a real S3-compatible store."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start")
                time.sleep(0.1)
        yield S3(endpoint=url, proc=proc)
    finally:
        proc.kill()
        proc.wait(10)


def scale_env(redis_url: str, s3: S3 | None, bucket: str = "zaoxiang", **extra: str) -> dict[str, str]:
    """The environment of every API server and worker of one test deployment."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ZAOXIANG_SERVICE__BACKEND": "redis",
        "ZAOXIANG_SERVICE__REDIS__URL": redis_url,
        "ZAOXIANG_SAFETY__ENABLED": "false",
        "ZAOXIANG_BUILTIN": "false",
    }
    if s3 is not None:
        env.update(
            {
                "ZAOXIANG_SERVICE__STORE_BACKEND": "s3",
                "ZAOXIANG_SERVICE__S3__ENDPOINT_URL": s3.endpoint,
                "ZAOXIANG_SERVICE__S3__BUCKET": bucket,
                "ZAOXIANG_SERVICE__S3__ACCESS_KEY_ID": "test",
                "ZAOXIANG_SERVICE__S3__SECRET_ACCESS_KEY": "test",
                "ZAOXIANG_SERVICE__S3__CREATE_BUCKET": "true",
            }
        )
    env.update(extra)
    return env


@dataclass
class Proc:
    proc: subprocess.Popen
    log: Path
    url: str | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    tmp: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, args: list[str], name: str) -> Proc:
        log = self.tmp / f"{name}.log"
        fh = open(log, "wb")
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        fh.close()
        p = Proc(proc, log)
        self.procs.append(p)
        return p

    def api(self, name: str, fake: bool = True, extra: list[str] = ()) -> Proc:
        port = free_port()
        data = self.tmp / name
        if fake:
            args = ["-m", "tests.service_serve_fake", "--", "serve", "--port", str(port), "--data-dir", str(data), *extra]
        else:
            args = ["-m", "zaoxiang", "serve", "--port", str(port), "--data-dir", str(data), *extra]
        p = self._spawn(args, name)
        p.url = f"http://127.0.0.1:{port}"
        return p

    def worker(self, name: str, step_delay: float = 0.0, steps: int = 3, fake: bool = True, extra: list[str] = ()) -> Proc:
        data = self.tmp / name
        if fake:
            args = ["-m", "tests.scale_worker_fake", "--step-delay", str(step_delay), "--steps", str(steps), "--",
                    "worker", "--device", "cpu", "--data-dir", str(data), *extra]  # fmt: skip
        else:
            args = ["-m", "zaoxiang", "worker", "--device", "cpu", "--data-dir", str(data), *extra]
        return self._spawn(args, name)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            while True:
                if p.proc.poll() is not None:
                    raise AssertionError(f"process exited early:\n{p.output()}")
                if p.url is not None:
                    try:
                        if httpx.get(p.url + "/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                elif "ready" in p.output():
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"process not ready:\n{p.output()}")
                time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            if p.proc.poll() is None:
                p.proc.terminate()
        for p in self.procs:
            try:
                p.proc.wait(15)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(5)
