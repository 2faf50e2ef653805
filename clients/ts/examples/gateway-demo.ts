// The gateway demo of the Cloud IoT Core documentation, on Passerelle's hub.
//
// It does what cmd/hubdemo does, with the same output lines: creates a
// registry with a Pub/Sub topic, a gateway through the hub's CreateGateway
// (the hub keeps its key) and a device; attaches the device through the hub
// with createIfMissing and bindIfNeeded, which binds it; subscribes to the
// configs of the device and of the gateway, printing each and logging it to
// a CSV file; publishes 15 states on the device's behalf, each acknowledged;
// shows where to read them; waits for enter ("Press enter to clean up"); and
// cleans up.
//
//   npm run build && node dist/examples/gateway-demo.js [--admin-addr 127.0.0.1:8080]
//     [--hub-addr 127.0.0.1:8090] [--data-dir ./passerelle-data] [--token TOKEN] [--yes]
//     [--set-config DATA] [--listen 30s] [--config-log <data-dir>/config_log.csv]
//
// Every flag is also an environment variable, PASSERELLE_<FLAG>
// (PASSERELLE_HUB_ADDR); flags win. The admin API (registries, devices) is
// called over REST with fetch; the hub with the generated client.
import {create} from "@bufbuild/protobuf";
import {ConnectError} from "@connectrpc/connect";
import {createWriteStream, mkdirSync, readFileSync} from "node:fs";
import {dirname, join, resolve} from "node:path";
import {createInterface} from "node:readline";
import {parseArgs} from "node:util";
import {
  Algorithm,
  AttachRequestSchema,
  GatewayAuthMethod,
  PublishStateRequestSchema,
  RequestStream,
  connectHub,
} from "../src/index.js";
import type {AttachRequest, HubConnection, PublishStateRequest} from "../src/index.js";

interface Config {
  adminAddr: string;
  hubAddr: string;
  dataDir: string;
  token: string;
  hubCa: string;
  yes: boolean;
  setConfig: string;
  listenMs: number;
  project: string;
  region: string;
  configLog: string;
  states: number;
  stateIntervalMs: number;
}

/** Parse a Go-style duration (30s, 1m30s, 500ms) into milliseconds. */
function duration(text: string): number {
  const units: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000};
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) {
    throw new Error(`invalid duration "${text}" (for example 30s, 1m, 500ms)`);
  }
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
}

/** Render milliseconds as Go's time.Duration prints them (5s, 1m0s, 500ms). */
function goDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let s = ms / 1000;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  s = s % 60;
  return `${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
}

function parse(argv: string[]): Config {
  const env = (name: string, fallback: string) => process.env[`PASSERELLE_${name}`] ?? fallback;
  const {values} = parseArgs({
    args: argv,
    options: {
      "admin-addr": {type: "string", default: env("ADMIN_ADDR", "127.0.0.1:8080")},
      "hub-addr": {type: "string", default: env("HUB_ADDR", "127.0.0.1:8090")},
      "data-dir": {type: "string", default: env("DATA_DIR", "./passerelle-data")},
      token: {type: "string", default: env("TOKEN", "")},
      "hub-ca": {type: "string", default: env("HUB_CA", "")},
      yes: {type: "boolean", default: ["1", "true"].includes(env("YES", ""))},
      "set-config": {type: "string", default: env("SET_CONFIG", "")},
      listen: {type: "string", default: env("LISTEN", "30s")},
      project: {type: "string", default: env("PROJECT", "passerelle-demo")},
      region: {type: "string", default: env("REGION", "us-central1")},
      "config-log": {type: "string", default: env("CONFIG_LOG", "")},
      states: {type: "string", default: env("STATES", "15")},
      "state-interval": {type: "string", default: env("STATE_INTERVAL", "1s")},
      help: {type: "boolean", short: "h", default: false},
    },
  });
  if (values.help) {
    console.log("usage: gateway-demo [--admin-addr A] [--hub-addr A] [--data-dir D] [--token T] [--hub-ca FILE]\n" +
      "  [--yes] [--set-config DATA] [--listen 30s] [--project P] [--region R] [--config-log FILE]\n" +
      "  [--states 15] [--state-interval 1s]   (each also PASSERELLE_<FLAG>)");
    process.exit(0);
  }
  const dataDir = values["data-dir"]!;
  return {
    adminAddr: values["admin-addr"]!,
    hubAddr: values["hub-addr"]!,
    dataDir,
    token: values.token!,
    hubCa: values["hub-ca"]!,
    yes: values.yes!,
    setConfig: values["set-config"]!,
    listenMs: duration(values.listen!),
    project: values.project!,
    region: values.region!,
    configLog: values["config-log"] || join(dataDir, "config_log.csv"),
    states: Number(values.states),
    stateIntervalMs: duration(values["state-interval"]!),
  };
}

/** A failed admin API call: its HTTP status and the server's message. */
class AdminError extends Error {}

/** The admin API's REST v1, with fetch. */
class Admin {
  constructor(private readonly addr: string, private readonly token: string) {}

  async call(method: string, path: string, body?: unknown): Promise<any> {
    const resp = await fetch(`http://${this.addr}/v1/${path}`, {
      method,
      headers: {authorization: `Bearer ${this.token}`, "content-type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await resp.text();
    if (!resp.ok) {
      let message = text.trim();
      try {
        message = JSON.parse(text).error.message ?? message;
      } catch {
        // not JSON: the body as it is
      }
      throw new AdminError(`${method} ${path}: HTTP ${resp.status}: ${message}`);
    }
    return text.trim() ? JSON.parse(text) : {};
  }
}

/** JSON with its object keys sorted, as Go renders a map. */
function sortedJSON(v: unknown): string {
  const sort = (x: any): any =>
    Array.isArray(x) ? x.map(sort) : x && typeof x === "object"
      ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort(x[k])])) : x;
  return JSON.stringify(sort(v));
}

/** A device as the sample prints it: its id, numId, config and gateway config. */
function brief(d: any): string {
  return sortedJSON({config: d.config ?? null, gatewayConfig: d.gatewayConfig ?? null, id: d.id ?? null, numId: d.numId ?? null});
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Demo {
  private readonly admin: Admin;
  private readonly conn: HubConnection;
  private readonly say = (text = "") => console.log(text);
  private stdin?: ReturnType<typeof createInterface>;

  constructor(private readonly cfg: Config) {
    this.admin = new Admin(cfg.adminAddr, cfg.token);
    this.conn = connectHub(cfg.hubAddr, {token: cfg.token, ca: cfg.hubCa ? readFileSync(cfg.hubCa) : undefined});
  }

  close(): void {
    this.conn.close();
    this.stdin?.close();
  }

  private async pause(prompt: string): Promise<void> {
    if (this.cfg.yes) return;
    this.say(prompt);
    this.stdin ??= createInterface({input: process.stdin});
    const lines = this.stdin;
    await new Promise<void>((resolve) => {
      const done = () => {
        lines.off("line", done);
        lines.off("close", done);
        resolve();
      };
      lines.once("line", done);
      lines.once("close", done);
    });
  }

  async run(): Promise<void> {
    const {hub} = this.conn;
    const c = this.cfg;
    const registryId = `test-registry-${Math.floor(Date.now() / 1000)}`;
    const gatewayId = "test-device-RS256";
    const deviceId = "test-device-noauthbind";
    const parent = `projects/${c.project}/locations/${c.region}`;
    const registry = `${parent}/registries/${registryId}`;
    const gateway = `${registry}/devices/${gatewayId}`;
    const device = `${registry}/devices/${deviceId}`;

    this.say("Running demo\n");
    this.say(`Creating registry: ${registryId}`);
    await this.admin.call("POST", `${parent}/registries`, {
      id: registryId,
      eventNotificationConfigs: [{pubsubTopicName: `projects/${c.project}/topics/gateway-demo`}],
    });
    this.say("Created registry\n");
    const attach = new AbortController();
    try {
      this.say(`Creating gateway: ${gatewayId}`);
      await hub.createGateway({
        parent: registry, gatewayId, algorithm: Algorithm.RS256,
        gatewayAuthMethod: GatewayAuthMethod.ASSOCIATION_ONLY,
      }, {timeoutMs: 30_000});
      this.say(`Created gateway ${brief(await this.admin.call("GET", gateway))}`);
      this.say(`Creating device to bind: ${deviceId}`);
      const dev = await this.admin.call("POST", `${registry}/devices`, {
        id: deviceId,
        gatewayConfig: {gatewayType: "NON_GATEWAY", gatewayAuthMethod: "ASSOCIATION_ONLY"},
      });
      this.say(`Created Device ${brief(dev)}\n`);

      this.say("Binding device");
      await this.attach(gateway, deviceId, attach.signal);
      this.say("Device Bound!");

      await this.listen(gateway, device, gatewayId, deviceId);
      await this.publish(registryId, gateway, device, gatewayId, deviceId);
      // Time to read the states before they go with the device.
      await this.pause("Press enter to clean up");
    } finally {
      attach.abort();
      await this.cleanup(registry, registryId, gateway, device, gatewayId, deviceId);
    }
  }

  /**
   * Attach the device through the hub, creating and binding it as needed;
   * it stays attached until signal aborts. Resolves once attached.
   */
  private async attach(gateway: string, deviceId: string, signal: AbortSignal): Promise<void> {
    const requests = new RequestStream<AttachRequest>();
    void requests.write(create(AttachRequestSchema, {gateway, deviceId, createIfMissing: true, bindIfNeeded: true}));
    // The request stream stays open: the device stays attached.
    const responses = this.conn.hub.attach(requests, {signal})[Symbol.asyncIterator]();
    const first = await responses.next();
    if (first.done || first.value.event.case !== "attached") {
      throw new Error(`Attach: the first response is ${first.done ? "the end of the stream" : first.value.event.case}, not attached`);
    }
    // The rest of the stream (re-attaches, gateway errors) is read until it ends.
    void (async () => {
      try {
        for (;;) {
          const r = await responses.next();
          if (r.done) return;
          if (r.value.event.case === "error") {
            const e = r.value.event.value;
            this.say(`Gateway error ${e.errorType} for ${e.deviceId}: ${e.description}`);
          }
        }
      } catch {
        // ended by signal, or by the hub: the demo goes on or has ended
      }
    })();
  }

  private async listen(gateway: string, device: string, gatewayId: string, deviceId: string): Promise<void> {
    const c = this.cfg;
    this.say(`Listening for messages for ${goDuration(c.listenMs)}`);
    this.say("Try setting configuration with:");
    this.say(`  grpcurl -plaintext -H "authorization: Bearer $(cat ${join(c.dataDir, "admin.token")})" -d ` +
      `'{"name": "${device}", "binaryData": "ZGV2aWNlLWNvbmZpZw=="}' ${c.adminAddr} google.cloud.iot.v1.DeviceManager/ModifyCloudToDeviceConfig`);
    await this.pause("Press enter to continue");

    mkdirSync(dirname(resolve(c.configLog)), {recursive: true, mode: 0o700});
    const log = createWriteStream(c.configLog);
    this.say(`Logging config messages to ${c.configLog}`);
    const csv = (fields: string[]) => fields.map((f) => /[",\n\r]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f).join(",") + "\n";
    log.write(csv(["time", "topic", "data"]));
    this.say(`Attaching: /devices/${deviceId}/attach`);
    this.say("Waiting for device to attach.");

    // The window is timed here, not by a stream deadline (the hub could
    // report an expired deadline first, which would look like a failure).
    const streams = new AbortController();
    let setDone = c.setConfig === "";
    let failed: unknown;
    let chain = Promise.resolve();
    const readers = [[deviceId, deviceId], [gatewayId, ""]].map(async ([id, target]) => {
      const topic = `/devices/${id}/config`;
      try {
        for await (const cfg of this.conn.hub.subscribeConfig({gateway, deviceId: target}, {signal: streams.signal})) {
          const data = Buffer.from(cfg.data).toString();
          // One message at a time, in the order they arrive.
          chain = chain.then(async () => {
            this.say(`Received message '${data}' on topic '${topic}' with Qos 1`);
            log.write(csv([new Date().toISOString(), topic, data]));
            if (!setDone && target === deviceId) {
              // The current config arrived: the subscription is live, so a
              // change made now is delivered.
              setDone = true;
              await this.admin.call("POST", `${device}:modifyCloudToDeviceConfig`, {binaryData: b64(c.setConfig)});
            }
          }).catch((err) => {
            failed ??= err;
            streams.abort();
          });
        }
      } catch (err) {
        if (!streams.signal.aborted) {
          failed ??= new Error(`config stream: ${ConnectError.from(err).message}`);
          streams.abort();
        }
      }
    });
    const window = setTimeout(() => streams.abort(), c.listenMs);
    await Promise.all(readers);
    clearTimeout(window);
    await chain;
    await new Promise((r) => log.end(r));
    if (failed) throw failed;
    this.say(`Detaching: /devices/${deviceId}/detach`);
    this.say("Finished.\n");
  }

  private async publish(registryId: string, gateway: string, device: string, gatewayId: string, deviceId: string): Promise<void> {
    const c = this.cfg;
    this.say("Publishing messages demo");
    this.say(`Publishing: ${c.states} messages`);
    this.say(`Attaching: /devices/${deviceId}/attach`);
    this.say("Waiting for device to attach.");
    // One request at a time: the next is sent once the previous is
    // acknowledged (the hub answers each once the bridge PUBACKed it).
    const requests = new RequestStream<PublishStateRequest>();
    const acks = this.conn.hub.publishState(requests)[Symbol.asyncIterator]();
    for (let i = 1; i <= c.states; i++) {
      const payload = `${registryId}/${gatewayId}-${deviceId}-payload-${i}`;
      this.say(`Publishing message ${i}/${c.states}: '${payload}' to /devices/${deviceId}/state`);
      void requests.write(create(PublishStateRequestSchema, {gateway, deviceId, data: Buffer.from(payload)}));
      let ack;
      try {
        ack = await acks.next();
      } catch (err) {
        throw new Error(`state ${i} not acknowledged: ${ConnectError.from(err).message}`);
      }
      if (ack.done) throw new Error(`state ${i} not acknowledged: the stream ended`);
      if (i < c.states) await sleep(c.stateIntervalMs);
    }
    requests.close();
    while (!(await acks.next()).done) {
      // the hub ends the stream once it detached
    }
    this.say(`Detaching: /devices/${deviceId}/detach`);
    this.say("Finished.\n");

    const states: any[] = (await this.admin.call("GET", `${device}/states`)).deviceStates ?? [];
    this.say("You can read the state messages for your device with:");
    this.say(`    grpcurl -plaintext -H "authorization: Bearer $(cat ${join(c.dataDir, "admin.token")})" -d ` +
      `'{"name": "${device}"}' ${c.adminAddr} google.cloud.iot.v1.DeviceManager/ListDeviceStates`);
    if (states.length > 0) {
      const newest = Buffer.from(states[0].binaryData ?? "", "base64").toString();
      this.say(`ListDeviceStates: ${states.length} states kept, the newest '${newest}'\n`);
    }
  }

  /** Clean up whatever happened before, as the sample's finally does. */
  private async cleanup(registry: string, registryId: string, gateway: string, device: string, gatewayId: string, deviceId: string): Promise<void> {
    try {
      await this.admin.call("POST", `${registry}:unbindDeviceFromGateway`, {gatewayId, deviceId});
      this.say("Device unbound: {}");
    } catch {
      // not bound, or already gone
    }
    for (const name of [device, gateway]) {
      try {
        await this.admin.call("DELETE", name);
        this.say("Delete device");
      } catch {
        // not created, or already gone
      }
    }
    try {
      await this.admin.call("DELETE", registry);
      this.say("Delete registry");
    } catch (err) {
      this.say(`Could not delete registry ${registryId}: ${(err as Error).message}`);
    }
  }
}

async function main(): Promise<number> {
  let cfg: Config;
  try {
    cfg = parse(process.argv.slice(2));
  } catch (err) {
    console.error(`gateway-demo: ${(err as Error).message}`);
    return 2;
  }
  if (!cfg.token) {
    const path = join(cfg.dataDir, "admin.token");
    try {
      cfg.token = readFileSync(path, "utf8").trim();
    } catch (err) {
      console.error(`gateway-demo: no admin token: ${(err as Error).message} (give --token, or --data-dir of the running passerelle serve)`);
      return 2;
    }
  }
  const demo = new Demo(cfg);
  try {
    await demo.run();
    return 0;
  } catch (err) {
    const e = err instanceof ConnectError ? `${err.message}` : (err as Error).message;
    console.error(`gateway-demo: ${e}`);
    return 1;
  } finally {
    demo.close();
  }
}

process.exitCode = await main();
