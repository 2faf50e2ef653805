"""A real `passerelle serve` for the tests: its own data folder and free
ports on 127.0.0.1, started, restarted on the same ports and stopped.

The binary is $PASSERELLE_BIN (scripts/clients.sh builds it), else the
repository's bin/passerelle (make build). TLSHub runs cmd/hub
($PASSERELLE_HUB_BIN, else bin/hub) over TLS beside it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, condition, timeout: float = 30.0):
    """Poll condition() until it returns a true value, which is returned."""
    end = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class Serve:
    """passerelle serve in a temporary data folder."""

    def __init__(self) -> None:
        self.binary = os.environ.get("PASSERELLE_BIN") or os.path.join(REPO, "bin", "passerelle")
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"no passerelle binary at {self.binary}: run make build, or set PASSERELLE_BIN")
        self._dir = tempfile.TemporaryDirectory(prefix="passerelle-py-")
        self.data_dir = os.path.join(self._dir.name, "data")
        self.admin_addr = f"127.0.0.1:{_free_port()}"
        self.hub_addr = f"127.0.0.1:{_free_port()}"
        self.mqtt_addr = f"127.0.0.1:{_free_port()}"
        self.log_path = os.path.join(self._dir.name, "serve.log")
        self.proc: subprocess.Popen | None = None
        self.token = ""

    def start(self) -> None:
        log = open(self.log_path, "a")
        start = log.tell()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data_dir, "--admin-addr", self.admin_addr,
             "--hub-addr", self.hub_addr, "--mqtt-addr", self.mqtt_addr],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._dir.name)
        log.close()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"passerelle serve exited with {self.proc.returncode}:\n{self.log()}")
            with open(self.log_path) as f:
                f.seek(start)
                return "Passerelle is ready" in f.read()

        wait_for("passerelle serve to be ready", ready)
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            self.token = f.read().strip()

    def stop(self) -> None:
        """Stop with SIGINT, as Ctrl-C would, and wait for the exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("passerelle serve still running 30 s after SIGINT")
        if code != 0:
            raise RuntimeError(f"passerelle serve exited with {code}:\n{self.log()}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._dir.cleanup()

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call the admin API's REST v1 (path after /v1/)."""
        req = urllib.request.Request(
            f"http://{self.admin_addr}/v1/{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"authorization": f"Bearer {self.token}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{method} {path}: HTTP {err.code}: {err.read().decode(errors='replace')}") from None
        return json.loads(raw) if raw.strip() else {}


class TLSHub:
    """cmd/hub serving TLS with serve's certificate for 127.0.0.1 (signed by
    its ca.pem) and taking serve's tokens, against serve's bridge and admin
    API."""

    def __init__(self, serve: Serve) -> None:
        self.binary = os.environ.get("PASSERELLE_HUB_BIN") or os.path.join(REPO, "bin", "hub")
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"no hub binary at {self.binary}: run make build, or set PASSERELLE_HUB_BIN")
        self.addr = f"127.0.0.1:{_free_port()}"
        self.ca = os.path.join(serve.data_dir, "ca.pem")
        self.log_path = os.path.join(serve._dir.name, "tls-hub.log")
        d = serve.data_dir
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--listen", self.addr, "--tls-cert", os.path.join(d, "bridge.pem"),
                 "--tls-key", os.path.join(d, "bridge.key"), "--tokens-file", os.path.join(d, "tokens"),
                 "--bridge", serve.mqtt_addr, "--bridge-ca", self.ca,
                 "--manager-url", f"http://{serve.admin_addr}", "--manager-token-file", os.path.join(d, "admin.token"),
                 "--data-dir", os.path.join(serve._dir.name, "tls-hub")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def serving() -> bool:
            with open(self.log_path) as f:
                text = f.read()
            if self.proc.poll() is not None:
                raise RuntimeError(f"cmd/hub exited with {self.proc.returncode}:\n{text[-4000:]}")
            return "hub serving" in text

        wait_for("cmd/hub to serve", serving)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
