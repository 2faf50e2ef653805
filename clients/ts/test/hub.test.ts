// The TypeScript client against a real passerelle serve: an error's
// status, a cancelled stream, and a reconnect after the hub restarts; and
// the retry policy against a fake next call.
//
//   npm run build && PASSERELLE_BIN=../../bin/passerelle npm test
import {create} from "@bufbuild/protobuf";
import {Code, ConnectError} from "@connectrpc/connect";
import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import {
  AttachRequestSchema,
  ErrorReason,
  Hub,
  PublishEventsRequestSchema,
  PublishStateRequestSchema,
  RequestStream,
  connectHub,
  defaultRetryPolicy,
  errorInfo,
  errorReason,
  retryInterceptor,
} from "../src/index.js";
import type {AttachRequest, HubConnection, PublishEventsRequest, PublishStateRequest} from "../src/index.js";
import {Serve, TLSHub, waitFor} from "./serve.js";
import {readFileSync} from "node:fs";

const parent = "projects/p1/locations/us-central1";
const timeoutMs = 30_000; // for every call: a test never hangs

/** The ConnectError a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new assert.AssertionError({message: "the call succeeded"});
}

describe("hub client", () => {
  const serve = new Serve();
  let conn: HubConnection;

  before(async () => {
    await serve.start();
    conn = connectHub(serve.hubAddr, {token: serve.token});
  });
  after(async () => {
    conn?.close();
    await serve.close();
  });

  /**
   * A registry, a gateway made by the hub, and a device created and bound
   * through Attach: returns the gateway's name and the device id.
   */
  async function gatewayWithDevice(registryId: string, fields: object = {}): Promise<[string, string]> {
    await serve.admin("POST", `${parent}/registries`, {id: registryId, ...fields});
    const registry = `${parent}/registries/${registryId}`;
    const {gateway} = await conn.hub.createGateway({parent: registry, gatewayId: "gw-1"}, {timeoutMs});
    assert.equal(gateway?.name, `${registry}/devices/gw-1`);
    const requests = new RequestStream<AttachRequest>();
    void requests.write(create(AttachRequestSchema, {gateway: gateway.name, deviceId: "dev-1", createIfMissing: true, bindIfNeeded: true}));
    const abort = new AbortController();
    const responses = conn.hub.attach(requests, {signal: abort.signal, timeoutMs})[Symbol.asyncIterator]();
    const first = await responses.next();
    assert.equal(first.done, false);
    assert.equal(first.value.event.case, "attached");
    assert.equal(first.value.event.value.created, true);
    assert.equal(first.value.event.value.bound, true);
    abort.abort();
    requests.close();
    await failure(responses.next()); // the end of the stream, which also clears its deadline
    return [gateway.name, "dev-1"];
  }

  async function attachedDevices(gateway: string): Promise<string[]> {
    const pool = await conn.hub.getPool({}, {timeoutMs});
    return pool.connections.filter((c) => c.gateway === gateway).flatMap((c) => c.attachedDevices.map((d) => d.deviceId));
  }

  it("reports the hub's status code and message", async () => {
    const noToken = connectHub(serve.hubAddr);
    try {
      const err = await failure(noToken.hub.listGateways({}, {timeoutMs}));
      assert.equal(err.code, Code.Unauthenticated);
      assert.equal(err.rawMessage, "missing 'authorization: Bearer <token>'");
      assert.equal(errorReason(err), ErrorReason.TOKEN_MISSING);
    } finally {
      noToken.close();
    }

    let err = await failure(conn.hub.createGateway({parent: `${parent}/registries/nowhere`, gatewayId: "gw"}, {timeoutMs}));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /The format of 'gateway_id' is invalid/);
    assert.equal(errorReason(err), ErrorReason.INVALID_FIELD);
    assert.equal(errorInfo(err)?.metadata.field, "gateway_id");

    err = await failure(conn.hub.publishEvent({gateway: `${parent}/registries/nowhere/devices/gw-1`, deviceId: "dev-1",
      data: Buffer.from("x")}, {timeoutMs}));
    assert.equal(err.code, Code.FailedPrecondition);
    assert.match(err.rawMessage, /the hub holds no key for this gateway/);
    assert.match(err.rawMessage, /create it with CreateGateway/);
    assert.equal(errorReason(err), ErrorReason.GATEWAY_KEY_MISSING);
  });

  it("gives a refused device's reason, on a call and on a PublishEvents stream that goes on", async () => {
    const [gateway, deviceId] = await gatewayWithDevice("ts-reasons",
      {eventNotificationConfigs: [{pubsubTopicName: "projects/p1/topics/ts-reasons"}]});
    await serve.admin("POST", `${parent}/registries/ts-reasons/devices`, {id: "unbound"});
    const err = await failure(conn.hub.publishEvent({gateway, deviceId: "unbound", data: Buffer.from("x")}, {timeoutMs}));
    assert.equal(err.code, Code.PermissionDenied);
    assert.equal(errorReason(err), ErrorReason.DEVICE_NOT_BOUND);

    const requests = new RequestStream<PublishEventsRequest>();
    void requests.write(create(PublishEventsRequestSchema, {gateway, deviceId: "unbound", data: Buffer.from("x")}));
    void requests.write(create(PublishEventsRequestSchema, {deviceId, data: Buffer.from("stored")}));
    requests.close();
    const answers = [];
    for await (const a of conn.hub.publishEvents(requests, {timeoutMs})) answers.push(a);
    assert.deepEqual(answers.map((a) => Number(a.index)), [0, 1]);
    assert.equal(answers[0].refused?.reason, ErrorReason.DEVICE_NOT_BOUND);
    assert.equal(answers[1].refused, undefined);
  });

  it("checks the hub's certificate over TLS, and sends the token", async () => {
    const tlsHub = new TLSHub(serve);
    await tlsHub.start();
    const ca = readFileSync(tlsHub.ca);
    const clients = [connectHub(tlsHub.addr, {token: serve.token, ca}), connectHub(tlsHub.addr, {ca}),
      connectHub(tlsHub.addr, {token: serve.token, tls: true})];
    try {
      const [trusted, noToken, untrusted] = clients.map((c) => c.hub);
      assert.deepEqual((await trusted.listGateways({}, {timeoutMs})).gateways, []);
      assert.equal((await failure(noToken.listGateways({}, {timeoutMs}))).code, Code.Unauthenticated);
      // The system's roots do not know passerelle serve's development CA.
      // (Connect reports a failed TLS handshake as INTERNAL, where gRPC's
      // own clients say UNAVAILABLE: not retried either way.)
      const err = await failure(untrusted.listGateways({}, {timeoutMs}));
      assert.equal(err.code, Code.Internal, err.message);
      assert.match(err.message, /certificate/);
    } finally {
      clients.forEach((c) => c.close());
      await tlsHub.close();
    }
  });

  it("ends a cancelled stream with CANCELLED and the hub releases the device", async () => {
    const [gateway, deviceId] = await gatewayWithDevice("ts-cancel");
    const abort = new AbortController();
    const configs = conn.hub.subscribeConfig({gateway, deviceId}, {signal: abort.signal, timeoutMs})[Symbol.asyncIterator]();
    const first = await configs.next(); // the current config: the stream holds the device attached
    assert.equal(first.done, false);
    assert.equal(first.value.version, 1n);
    assert.deepEqual(await attachedDevices(gateway), [deviceId]);

    abort.abort();
    const err = await failure(configs.next());
    assert.equal(err.code, Code.Canceled);
    await waitFor("the hub to detach the device of the cancelled stream",
      async () => (await attachedDevices(gateway)).length === 0);
  });

  it("works on after the hub restarts", async () => {
    const [gateway, deviceId] = await gatewayWithDevice("ts-restart");
    const configs = conn.hub.subscribeConfig({gateway, deviceId}, {timeoutMs})[Symbol.asyncIterator]();
    assert.equal((await configs.next()).done, false);

    await serve.restart();
    const err = await failure(configs.next());
    assert.equal(err.code, Code.Unavailable, err.message);

    // The same client connects again on its next call.
    const {gateways} = await conn.hub.listGateways({}, {timeoutMs});
    assert.ok(gateways.some((g) => g.name === gateway), `ListGateways lacks ${gateway}`);
    const abort = new AbortController();
    const again = conn.hub.subscribeConfig({gateway, deviceId}, {signal: abort.signal, timeoutMs})[Symbol.asyncIterator]();
    const config = await again.next();
    assert.equal(config.done, false);
    assert.equal(config.value.version, 1n);
    abort.abort();
    assert.equal((await failure(again.next())).code, Code.Canceled);
    const requests = new RequestStream<PublishStateRequest>();
    void requests.write(create(PublishStateRequestSchema, {gateway, deviceId, data: Buffer.from(`after-restart-${Date.now()}`)}));
    requests.close();
    const acks = [];
    for await (const ack of conn.hub.publishState(requests, {timeoutMs})) acks.push(ack.index);
    assert.deepEqual(acks, [0n]);
  });
});

describe("retryInterceptor", () => {
  // A fake call: fails with the given codes in turn, then succeeds.
  function fake(codes: Code[]) {
    let calls = 0;
    const next = async () => {
      const code = codes[calls++];
      if (code !== undefined) throw new ConnectError("fake", code);
      return {stream: false} as never;
    };
    return {next, calls: () => calls};
  }
  const request = (method: string, stream = false) =>
    ({stream, method: Hub.method[(method[0].toLowerCase() + method.slice(1)) as keyof typeof Hub.method], signal: new AbortController().signal}) as never;
  const policy = {...defaultRetryPolicy, initialBackoffMs: 1, maxBackoffMs: 2};

  it("retries UNAVAILABLE up to maxAttempts", async () => {
    const f = fake([Code.Unavailable, Code.Unavailable]);
    await retryInterceptor(policy)(f.next)(request("ListGateways"));
    assert.equal(f.calls(), 3);

    const g = fake(Array(10).fill(Code.Unavailable));
    const err = await failure(retryInterceptor(policy)(g.next)(request("PublishEvent")));
    assert.equal(err.code, Code.Unavailable);
    assert.equal(g.calls(), policy.maxAttempts);
  });

  it("does not retry other codes, CreateGateway or streams", async () => {
    for (const [method, code, stream] of [["ListGateways", Code.FailedPrecondition, false], ["CreateGateway", Code.Unavailable, false],
      ["SubscribeConfig", Code.Unavailable, true]] as const) {
      const f = fake([code]);
      const err = await failure(retryInterceptor(policy)(f.next)(request(method, stream)));
      assert.equal(err.code, code);
      assert.equal(f.calls(), 1, method);
    }
  });
});
