// A real `passerelle serve` for the tests: its own data folder and free
// ports on 127.0.0.1, started, restarted on the same ports and stopped.
// The binary is $PASSERELLE_BIN (scripts/clients.sh builds it), else the
// repository's bin/passerelle (make build). TLSHub runs cmd/hub
// ($PASSERELLE_HUB_BIN, else bin/hub) over TLS beside it.
import {spawn} from "node:child_process";
import type {ChildProcess} from "node:child_process";
import {accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync} from "node:fs";
import {createServer} from "node:net";
import {tmpdir} from "node:os";
import {dirname, join, resolve} from "node:path";
import {fileURLToPath} from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const {port} = s.address() as {port: number};
      s.close(() => resolvePort(port));
    });
  });
}

/** Poll condition until it returns a truthy value, which is returned. */
export async function waitFor<T>(what: string, condition: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await condition();
    if (got) return got;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Serve is passerelle serve in a temporary data folder. */
export class Serve {
  readonly binary = process.env.PASSERELLE_BIN || join(repo, "bin", "passerelle");
  readonly dir = mkdtempSync(join(tmpdir(), "passerelle-ts-"));
  readonly dataDir = join(this.dir, "data");
  readonly logPath = join(this.dir, "serve.log");
  adminAddr = "";
  hubAddr = "";
  mqttAddr = "";
  token = "";
  private proc?: ChildProcess;
  private exited?: Promise<number | null>;

  async start(): Promise<void> {
    try {
      accessSync(this.binary, constants.X_OK);
    } catch {
      throw new Error(`no passerelle binary at ${this.binary}: run make build, or set PASSERELLE_BIN`);
    }
    if (!this.adminAddr) {
      this.adminAddr = `127.0.0.1:${await freePort()}`;
      this.hubAddr = `127.0.0.1:${await freePort()}`;
      this.mqttAddr = `127.0.0.1:${await freePort()}`;
    }
    let from = 0;
    try {
      from = statSync(this.logPath).size;
    } catch {
      // first start
    }
    const log = openSync(this.logPath, "a");
    const proc = spawn(this.binary, ["serve", "--data-dir", this.dataDir, "--admin-addr", this.adminAddr,
      "--hub-addr", this.hubAddr, "--mqtt-addr", this.mqttAddr], {cwd: this.dir, stdio: ["ignore", log, log]});
    closeSync(log);
    this.proc = proc;
    this.exited = new Promise((r) => proc.once("exit", (code) => r(code)));
    await waitFor("passerelle serve to be ready", () => {
      if (proc.exitCode !== null) throw new Error(`passerelle serve exited with ${proc.exitCode}:\n${this.log()}`);
      return readFileSync(this.logPath, "utf8").slice(from).includes("Passerelle is ready");
    });
    this.token = readFileSync(join(this.dataDir, "admin.token"), "utf8").trim();
  }

  /** Stop with SIGINT, as Ctrl-C would, and wait for the exit. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    proc.kill("SIGINT");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    const code = await this.exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`passerelle serve exited with ${code}:\n${this.log()}`);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async close(): Promise<void> {
    try {
      await this.stop();
    } finally {
      rmSync(this.dir, {recursive: true, force: true});
    }
  }

  log(): string {
    return readFileSync(this.logPath, "utf8").slice(-4000);
  }

  /** Call the admin API's REST v1 (path after /v1/). */
  async admin(method: string, path: string, body?: unknown): Promise<any> {
    const resp = await fetch(`http://${this.adminAddr}/v1/${path}`, {
      method,
      headers: {authorization: `Bearer ${this.token}`, "content-type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${method} ${path}: HTTP ${resp.status}: ${text}`);
    return text.trim() ? JSON.parse(text) : {};
  }
}

/**
 * TLSHub is cmd/hub serving TLS with serve's certificate for 127.0.0.1
 * (signed by its ca.pem) and taking serve's tokens, against serve's bridge
 * and admin API.
 */
export class TLSHub {
  readonly binary = process.env.PASSERELLE_HUB_BIN || join(repo, "bin", "hub");
  addr = "";
  readonly ca: string;
  private proc?: ChildProcess;
  private exited?: Promise<number | null>;

  constructor(private readonly serve: Serve) {
    this.ca = join(serve.dataDir, "ca.pem");
  }

  async start(): Promise<void> {
    try {
      accessSync(this.binary, constants.X_OK);
    } catch {
      throw new Error(`no hub binary at ${this.binary}: run make build, or set PASSERELLE_HUB_BIN`);
    }
    this.addr = `127.0.0.1:${await freePort()}`;
    const d = this.serve.dataDir;
    const logPath = join(this.serve.dir, "tls-hub.log");
    const log = openSync(logPath, "w");
    const proc = spawn(this.binary, ["--listen", this.addr, "--tls-cert", join(d, "bridge.pem"), "--tls-key", join(d, "bridge.key"),
      "--tokens-file", join(d, "tokens"), "--bridge", this.serve.mqttAddr, "--bridge-ca", this.ca,
      "--manager-url", `http://${this.serve.adminAddr}`, "--manager-token-file", join(d, "admin.token"),
      "--data-dir", join(this.serve.dir, "tls-hub")], {stdio: ["ignore", log, log]});
    closeSync(log);
    this.proc = proc;
    this.exited = new Promise((r) => proc.once("exit", (code) => r(code)));
    await waitFor("cmd/hub to serve", () => {
      const text = readFileSync(logPath, "utf8");
      if (proc.exitCode !== null) throw new Error(`cmd/hub exited with ${proc.exitCode}:\n${text.slice(-4000)}`);
      return text.includes("hub serving");
    });
  }

  async close(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    proc.kill("SIGINT");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    await this.exited;
    clearTimeout(timer);
  }
}
