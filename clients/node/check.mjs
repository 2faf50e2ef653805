// Runs Google's Node client for Cloud IoT Core (@google-cloud/iot) against a
// running Passerelle manager: the same calls over gRPC, then over REST.
//
//   PASSERELLE_ADMIN_ADDR=127.0.0.1:8080 \
//   PASSERELLE_TOKEN="$(cat passerelle-data/admin.token)" node check.mjs
//
// It prints one line per step and exits 1 at the first failure.
import iot from '@google-cloud/iot';
import grpc from '@grpc/grpc-js';
import {OAuth2Client} from 'google-auth-library';

const addr = process.env.PASSERELLE_ADMIN_ADDR;
const token = process.env.PASSERELLE_TOKEN;
if (!addr || !token) {
  console.error('check.mjs: set PASSERELLE_ADMIN_ADDR (host:port) and PASSERELLE_TOKEN');
  process.exit(2);
}
const host = addr.slice(0, addr.lastIndexOf(':'));
const port = Number(addr.slice(addr.lastIndexOf(':') + 1));

// The token as an auth client: REST sends it as a header, and with it the
// library never looks for Google credentials (nor probes GCE's metadata server).
const authClient = new OAuth2Client();
authClient.setCredentials({access_token: token});
// gRPC: a plaintext channel; the token goes with each call as metadata.
const grpcClient = () => new iot.v1.DeviceManagerClient({apiEndpoint: host, port,
  sslCreds: grpc.credentials.createInsecure(), authClient});
// REST: HTTP/1.1 and JSON, transcoded by the server as Google's front end did.
const restClient = () => new iot.v1.DeviceManagerClient({apiEndpoint: host, port,
  fallback: true, protocol: 'http', authClient});
// Per-call options: gRPC needs the token here (over REST the auth client sets
// the same header).
const call = {otherArgs: {headers: {authorization: `Bearer ${token}`}}, timeout: 15000};

const bytes = (b) => Buffer.from(b, typeof b === 'string' ? 'base64' : undefined);

function expect(ok, what) {
  if (!ok) throw new Error(what);
}

async function run(transport, client) {
  const step = async (name, fn) => {
    let detail;
    try {
      detail = await fn();
    } catch (err) {
      throw new Error(`${transport}: ${name} failed: ${err.code !== undefined ? `code ${err.code}: ` : ''}${err.message}`);
    }
    console.log(`${transport}: ${name}${detail ? ` (${detail})` : ''}`);
  };

  const parent = 'projects/p1/locations/us-central1';
  const registryId = `node-check-${transport}-${Date.now()}`;
  const registry = `${parent}/registries/${registryId}`;
  const deviceIds = ['dev-a', 'dev-b', 'dev-c'];
  const device = `${registry}/devices/dev-a`;
  const topic = 'projects/p1/topics/node-check';

  await step('CreateDeviceRegistry', async () => {
    const [reg] = await client.createDeviceRegistry({parent, deviceRegistry: {id: registryId,
      eventNotificationConfigs: [{pubsubTopicName: topic}]}}, call);
    expect(reg.name === registry, `name is ${reg.name}`);
    expect(reg.eventNotificationConfigs?.[0]?.pubsubTopicName === topic,
      `eventNotificationConfigs is ${JSON.stringify(reg.eventNotificationConfigs)}`);
    return reg.name;
  });
  await step('ListDeviceRegistries', async () => {
    const [regs] = await client.listDeviceRegistries({parent}, call);
    expect(regs.some((r) => r.id === registryId), 'the new registry is not listed');
    return `${regs.length} registries`;
  });
  await step(`CreateDevice x${deviceIds.length}`, async () => {
    for (const id of deviceIds) {
      const [dev] = await client.createDevice({parent: registry, device: {id}}, call);
      expect(dev.id === id && String(dev.numId) !== '0', `got ${JSON.stringify(dev)}`);
    }
  });
  await step('GetDevice', async () => {
    const [dev] = await client.getDevice({name: device}, call);
    // As Cloud IoT Core did, a device's name in a response ends in its numeric id.
    expect(dev.id === 'dev-a' && dev.name === `${registry}/devices/${dev.numId}`,
      `got id ${dev.id}, name ${dev.name}`);
    return `numId ${dev.numId}`;
  });
  await step('ModifyCloudToDeviceConfig', async () => {
    const [cfg] = await client.modifyCloudToDeviceConfig(
      {name: device, binaryData: Buffer.from('hello from node')}, call);
    expect(String(cfg.version) === '2', `version is ${cfg.version}, want 2`);
    expect(bytes(cfg.binaryData).toString() === 'hello from node', 'binaryData differs');
    return `version ${cfg.version}`;
  });
  await step('ListDeviceConfigVersions', async () => {
    const [resp] = await client.listDeviceConfigVersions({name: device}, call);
    const versions = resp.deviceConfigs.map((c) => String(c.version));
    expect(versions.join() === '2,1', `versions are ${versions}, want 2,1`);
    return `versions ${versions}`;
  });
  await step('ListDevices, pageSize 2', async () => {
    const onePage = {...call, autoPaginate: false};
    const [page, next] = await client.listDevices({parent: registry, pageSize: 2}, onePage);
    expect(page.length === 2 && next?.pageToken, `first page: ${page.length} devices, next ${JSON.stringify(next)}`);
    // listDevicesAsync fetches page after page, sending back each nextPageToken
    // (it always does; autoPaginate: false only spares a warning).
    const ids = [];
    for await (const dev of client.listDevicesAsync({parent: registry, pageSize: 2}, onePage)) {
      ids.push(dev.id);
    }
    ids.sort();
    expect(ids.join() === deviceIds.join(), `auto-pagination got ${ids}`);
    return `first page 2 + a page token, auto-pagination got ${ids.length}`;
  });
  // Field masks go as query parameters over REST (fieldMask=config%2Cgateway_config):
  // paths in snake_case, as Google's front end took them.
  await step('ListDevices, fieldMask in snake_case', async () => {
    const [devs] = await client.listDevices(
      {parent: registry, fieldMask: {paths: ['config', 'gateway_config']}}, call);
    expect(devs.length === deviceIds.length, `${devs.length} devices, want ${deviceIds.length}`);
    for (const dev of devs) {
      expect(dev.config && String(dev.config.version) !== '0' && dev.gatewayConfig,
        `device ${dev.id} lacks config or gatewayConfig: ${JSON.stringify(dev)}`);
    }
    return 'config and gatewayConfig on each device';
  });
  await step('UpdateDevice, updateMask in snake_case', async () => {
    const [dev] = await client.updateDevice({device: {name: device, logLevel: 'DEBUG', metadata: {k: 'v'}},
      updateMask: {paths: ['log_level', 'metadata']}}, call);
    expect(['DEBUG', 4].includes(dev.logLevel) && dev.metadata?.k === 'v',
      `logLevel ${dev.logLevel}, metadata ${JSON.stringify(dev.metadata)}`);
    return 'log_level and metadata updated';
  });
  await step('GetDevice of a missing device is NOT_FOUND', async () => {
    const err = await client.getDevice({name: `${registry}/devices/missing`}, call).then(
      () => null, (e) => e);
    expect(err, 'it succeeded');
    if (err.code === grpc.status.NOT_FOUND) return 'code 5';
    // google-gax 5 (what @google-cloud/iot 5 uses) hands on REST errors from
    // its HTTP client as they are: code is the HTTP status and the message is
    // the JSON body. google-gax 6 maps them to gRPC codes.
    const body = transport === 'rest' && err.code === 404 ? JSON.parse(err.message) : {};
    expect(body.error?.status === 'NOT_FOUND', `code ${err.code} (${err.message}), want 5`);
    return 'HTTP 404, status NOT_FOUND';
  });
  await step(`DeleteDevice x${deviceIds.length}`, async () => {
    for (const id of deviceIds) await client.deleteDevice({name: `${registry}/devices/${id}`}, call);
  });
  await step('DeleteDeviceRegistry', async () => {
    await client.deleteDeviceRegistry({name: registry}, call);
  });
  await client.close();
}

try {
  await run('grpc', grpcClient());
  await run('rest', restClient());
  console.log(`node check: ok (@google-cloud/iot over gRPC and REST against ${addr})`);
} catch (err) {
  console.error(`node check: FAILED: ${err.message}`);
  process.exit(1);
}
