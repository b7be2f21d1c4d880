"""Real processes for end-to-end runs: the reference server (``meisa-sync serve``) and drain
workers, each in its own process, talking over sockets as in production.

Used by ``test_convergence.py`` and ``bench/drain.py``. ``python -m tests.integration.processes
worker DATABASE_URL BASE_URL API_KEY [options]`` is the worker side: the demo application's
``UserMapping`` registered with ``SQLAlchemySync``, drained by ``Worker.run`` until SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_USERNAME",
    "SERVER_KEY",
    "ServerProcess",
    "WorkerProcess",
    "free_port",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_KEY = "meisa_test_end_to_end_key_00000000000000000001"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "end-to-end-admin-password"
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_toml(*, per_minute: int, per_hour: int) -> str:
    """CONTRACT.md §9's config: one key with every scope and these limits, one dashboard user."""
    return f"""
[server]
jwt_secret = "end-to-end-jwt-secret"

[[api_keys]]
key = "{SERVER_KEY}"
name = "end to end"
scopes = ["contacts:write", "contacts:delete", "tags:write", "sequences:write"]
per_minute = {per_minute}
per_hour = {per_hour}

[[users]]
username = "{ADMIN_USERNAME}"
password = "{ADMIN_PASSWORD}"
"""


def _python(*code_and_args: str) -> list[str]:
    return [sys.executable, *code_and_args]


class ServerProcess:
    """``meisa-sync serve`` with the control plane on, in a subprocess on a free port."""

    def __init__(
        self,
        workdir: Path,
        *,
        per_minute: int = 1_000_000_000,
        per_hour: int = 1_000_000_000,
        request_log_size: int = 1000,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "meisa-server.toml"
        self.config.write_text(server_toml(per_minute=per_minute, per_hour=per_hour))
        self.port = free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/api/v1"
        self.api_key = SERVER_KEY
        self.request_log_size = request_log_size
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._http = httpx.Client(timeout=30)
        self._token: str | None = None

    def start(self) -> ServerProcess:
        self._log = (self.workdir / "server.log").open("wb")
        command = _python(
            "-c",
            "from meisa_sync.cli import main; main()",
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            f"sqlite:///{self.workdir / 'meisa-server.db'}",
            "--config",
            str(self.config),
            "--control-plane",
            "--request-log-size",
            str(self.request_log_size),
        )
        self._process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_tail()}")
            try:
                if self._http.get(f"{self.base_url}/health/").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
        self._http.close()

    def __enter__(self) -> ServerProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- control plane and dashboard reads ----------------------------------------------------

    def chaos(self, **settings: Any) -> None:
        self._http.post(f"{self.root_url}/_meisa/chaos/", json=settings).raise_for_status()

    def reset(self) -> None:
        self._http.post(f"{self.root_url}/_meisa/reset/", json={}).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        response = self._http.get(f"{self.root_url}/_meisa/requests/")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = self._http.post(
                f"{self.base_url}/auth/token/",
                json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def contacts(self) -> Iterator[dict[str, Any]]:
        """Every contact, oldest first."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor is not None:
                params["cursor"] = cursor
            response = self._http.get(
                f"{self.base_url}/contacts/", params=params, headers=self._headers()
            )
            response.raise_for_status()
            page = response.json()
            yield from page["results"]
            cursor = page["next_cursor"]
            if cursor is None:
                return


class WorkerProcess:
    """A drain worker in its own process (this module's ``worker`` command)."""

    def __init__(
        self,
        database_url: str,
        server: ServerProcess,
        logfile: Path,
        *,
        options: Sequence[str] = (),
    ) -> None:
        self._log = logfile.open("wb")
        self.logfile = logfile
        command = _python(
            "-m",
            "tests.integration.processes",
            "worker",
            database_url,
            server.base_url,
            server.api_key,
            *options,
        )
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, leases left to expire."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful) and wait; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")


def run_worker(argv: Sequence[str]) -> int:
    """The worker process: drain the demo application's outbox until SIGTERM."""
    import logging

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from meisa_sync.client import MeisaClient
    from meisa_sync.demo.mapping import UserMapping
    from meisa_sync.retry import RetryPolicy
    from meisa_sync.worker import Worker
    from meisa_sync_sqlalchemy import SQLAlchemySync

    parser = argparse.ArgumentParser(prog="processes worker")
    parser.add_argument("database_url")
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--retry-base", type=float, default=0.05)
    parser.add_argument("--retry-cap", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format=f"%(asctime)s worker {os.getpid()} %(name)s %(message)s"
    )
    engine = create_engine(args.database_url)
    sync = SQLAlchemySync(sessionmaker(engine), [UserMapping()])
    client = MeisaClient(
        args.api_key, base_url=args.base_url, timeout=httpx.Timeout(10.0, connect=5.0)
    )
    worker = Worker(
        sync.sync_app,
        client,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        lease=timedelta(seconds=args.lease),
        retry_policy=RetryPolicy(base=args.retry_base, cap=args.retry_cap),
        idle_poll=0.3,
    )
    try:
        report = worker.run()
        print(f"worker {os.getpid()} done: {report.summary()}", flush=True)
    finally:
        worker.close()
        client.close()
        sync.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m tests.integration.processes worker DATABASE_URL BASE_URL KEY")
    sys.exit(run_worker(sys.argv[2:]))
