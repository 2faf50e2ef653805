// A device (or gateway): properties, metadata, credentials, bindings,
// config history and form, states, commands, block/unblock.
import { useState } from 'preact/hooks';
import { b64decode, b64encodeText, call, decode, Device, DeviceConfig, DeviceCredential, DeviceState, isValidBase64, v1 } from '../api';
import { href } from '../router';
import { Confirm, ErrorBox, Field, lastPart, Link, Notice, Time, useAction, useCan, useLoad, usePoll, registryOf } from '../ui';
import { Connected, KEY_FORMATS, parseMetadata } from './devices';
import { findConnection, HubConnection, usePool } from './hub';

const TABS: [string, string][] = [
  ['', 'Overview'],
  ['config', 'Configuration'],
  ['state', 'State'],
  ['commands', 'Commands'],
];

export function DevicePage(props: { name: string; section: string }) {
  const dev = useLoad((signal) => call<Device>('GET', v1(props.name), undefined, undefined, signal), [props.name]);
  usePoll(dev.refresh, 3000);
  const registry = registryOf(props.name);
  const d = dev.data;
  const isGateway = d?.gatewayConfig?.gatewayType === 'GATEWAY';
  return (
    <>
      <p class="crumbs">
        <Link href={href(registry.split('/').slice(0, 4).join('/') + '/registries')}>Registries</Link> /{' '}
        <Link href={href(registry)}>{lastPart(registry)}</Link> / {lastPart(props.name)}
      </p>
      <h1>
        {isGateway ? 'Gateway' : 'Device'} {lastPart(props.name)}
      </h1>
      <ErrorBox error={dev.error} />
      <nav aria-label="Device sections">
        <ul class="tabs">
          {TABS.map(([s, label]) => (
            <li key={s}>
              <Link href={href(props.name, s)} aria-current={props.section === s ? 'page' : undefined}>
                {label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      {d && props.section === '' && <Overview device={d} reload={dev.reload} />}
      {d && props.section === 'config' && <Configs name={props.name} />}
      {d && props.section === 'state' && <States name={props.name} device={d} />}
      {d && props.section === 'commands' && <Commands name={props.name} />}
    </>
  );
}

function Overview(props: { device: Device; reload: () => void }) {
  const d = props.device;
  const can = useCan();
  const isGateway = d.gatewayConfig?.gatewayType === 'GATEWAY';
  const block = useAction(async (blocked: boolean) => {
    await call('PATCH', v1(d.name!), { blocked }, { updateMask: 'blocked' });
    props.reload();
  });
  return (
    <>
      <div class="grid2">
        <section aria-labelledby="props-h">
          <h2 id="props-h">Properties</h2>
          <dl class="props">
            <dt>Numeric ID</dt>
            <dd class="mono">{d.numId}</dd>
            <dt>Connection</dt>
            <dd>
              <Connected device={d} />
            </dd>
            <dt>Blocked</dt>
            <dd>
              {d.blocked ? <span class="badge bad">blocked</span> : 'no'}{' '}
              {can('cloudiot.devices.update') && (
                <button type="button" onClick={() => block.run(!d.blocked)} disabled={block.busy}>
                  {d.blocked ? 'Unblock' : 'Block'}
                </button>
              )}
            </dd>
            <dt>Last heartbeat</dt>
            <dd>
              <Time value={d.lastHeartbeatTime} />
            </dd>
            <dt>Last event</dt>
            <dd>
              <Time value={d.lastEventTime} />
            </dd>
            <dt>Last state</dt>
            <dd>
              <Time value={d.lastStateTime} />
            </dd>
            <dt>Last config sent</dt>
            <dd>
              <Time value={d.lastConfigSendTime} />
            </dd>
            <dt>Last config ack</dt>
            <dd>
              <Time value={d.lastConfigAckTime} />
            </dd>
            <dt>Last error</dt>
            <dd id="last-error">
              {d.lastErrorStatus?.message ? (
                <>
                  <span class="mono">
                    {d.lastErrorStatus.code !== undefined ? `code ${d.lastErrorStatus.code}: ` : ''}
                    {d.lastErrorStatus.message}
                  </span>{' '}
                  at <Time value={d.lastErrorTime} />
                </>
              ) : (
                <span class="muted">none</span>
              )}
            </dd>
            {d.gatewayConfig?.lastAccessedGatewayId && (
              <>
                <dt>Last gateway</dt>
                <dd>
                  <Link href={href(registryOf(d.name!) + '/devices/' + d.gatewayConfig.lastAccessedGatewayId)}>{d.gatewayConfig.lastAccessedGatewayId}</Link> at{' '}
                  <Time value={d.gatewayConfig.lastAccessedGatewayTime} />
                </dd>
              </>
            )}
          </dl>
          <ErrorBox error={block.error} />
        </section>
        <Metadata device={d} reload={props.reload} />
      </div>
      <Credentials device={d} reload={props.reload} />
      {isGateway ? <GatewayPanel device={d} reload={props.reload} /> : <GatewaysOf device={d} />}
    </>
  );
}

function Metadata(props: { device: Device; reload: () => void }) {
  const d = props.device;
  const can = useCan();
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState('');
  const save = useAction(async () => {
    await call('PATCH', v1(d.name!), { metadata: parseMetadata(text) }, { updateMask: 'metadata' });
    setEditing(false);
    props.reload();
  });
  const entries = Object.entries(d.metadata ?? {});
  return (
    <section aria-labelledby="meta-h">
      <h2 id="meta-h">Metadata</h2>
      {entries.length === 0 && <p class="muted">No metadata.</p>}
      {entries.length > 0 && (
        <table id="metadata">
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">Value</th>
            </tr>
          </thead>
          <tbody>
            {entries.map(([k, v]) => (
              <tr key={k}>
                <td class="mono">{k}</td>
                <td>
                  <pre>{v}</pre>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {can('cloudiot.devices.update') && !editing && (
        <button
          type="button"
          onClick={() => {
            setText(entries.map(([k, v]) => `${k}=${v}`).join('\n'));
            setEditing(true);
          }}
        >
          Edit metadata
        </button>
      )}
      {editing && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            save.run();
          }}
        >
          <Field label="Metadata" hint="One key=value a line.">
            {(id, h) => <textarea id={id} name="metadata" aria-describedby={h} value={text} onInput={(e) => setText(e.currentTarget.value)} />}
          </Field>
          <ErrorBox error={save.error} />
          <div class="row">
            <button type="submit" class="primary" disabled={save.busy}>
              Save metadata
            </button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

function Credentials(props: { device: Device; reload: () => void }) {
  const d = props.device;
  const can = useCan();
  const creds = d.credentials ?? [];
  const [format, setFormat] = useState('ES256_PEM');
  const [key, setKey] = useState('');
  const [expires, setExpires] = useState('');
  const update = useAction(async (next: DeviceCredential[]) => {
    await call('PATCH', v1(d.name!), { credentials: next }, { updateMask: 'credentials' });
    props.reload();
  });
  const expired = (c: DeviceCredential) => !!c.expirationTime && Date.parse(c.expirationTime) > 0 && Date.parse(c.expirationTime) <= Date.now();
  return (
    <section aria-labelledby="creds-h">
      <h2 id="creds-h">Credentials</h2>
      {creds.length === 0 && <p class="muted">No credentials: the device cannot connect on its own.</p>}
      {creds.length > 0 && (
        <div class="table-wrap">
          <table id="credentials">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Format</th>
                <th scope="col">Expires</th>
                <th scope="col">Key</th>
                {can('cloudiot.devices.update') && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {creds.map((c, i) => (
                <tr key={i}>
                  <td>{i + 1}</td>
                  <td>{c.publicKey?.format}</td>
                  <td>
                    {c.expirationTime && Date.parse(c.expirationTime) > 0 ? <Time value={c.expirationTime} /> : 'never'}
                    {expired(c) && <span class="badge bad"> expired</span>}
                  </td>
                  <td>
                    <details>
                      <summary>Show key</summary>
                      <pre>{c.publicKey?.key}</pre>
                    </details>
                  </td>
                  {can('cloudiot.devices.update') && (
                    <td class="row">
                      {!expired(c) && (
                        <button type="button" disabled={update.busy} onClick={() => update.run(creds.map((x, j) => (j === i ? { ...x, expirationTime: new Date().toISOString() } : x)))}>
                          Expire credential {i + 1} now
                        </button>
                      )}
                      <Confirm label={`Remove credential ${i + 1}`} question="Remove this credential?" onConfirm={() => update.run(creds.filter((_, j) => j !== i))} />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {can('cloudiot.devices.update') && (
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            const c: DeviceCredential = { publicKey: { format, key: key.trim() } };
            if (expires) c.expirationTime = new Date(expires).toISOString();
            if (await update.run([...creds, c])) {
              setKey('');
              setExpires('');
            }
          }}
        >
          <h3>Add a credential</h3>
          <div class="row">
            <Field label="Format">
              {(id) => (
                <select id={id} name="credFormat" value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
                  {KEY_FORMATS.map((f) => (
                    <option key={f}>{f}</option>
                  ))}
                </select>
              )}
            </Field>
            <Field label="Expires (optional, your time zone)">
              {(id) => <input id={id} name="credExpires" type="datetime-local" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} />}
            </Field>
          </div>
          <Field label="Public key (PEM)">{(id) => <textarea id={id} name="credKey" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />}</Field>
          <button type="submit" disabled={update.busy}>
            Add credential
          </button>
        </form>
      )}
      <ErrorBox error={update.error} />
    </section>
  );
}

/** GatewaysOf lists the gateways a device is bound to. */
function GatewaysOf(props: { device: Device }) {
  const d = props.device;
  const registry = registryOf(d.name!);
  const can = useCan();
  const list = useLoad(
    (signal) =>
      call<{ devices?: Device[]; nextPageToken?: string }>('GET', v1(registry) + '/devices', undefined, { 'gatewayListOptions.associationsDeviceId': d.id, pageSize: 100 }, signal),
    [d.name],
  );
  const unbind = useAction(async (gw: string) => {
    await call('POST', v1(registry) + ':unbindDeviceFromGateway', { gatewayId: gw, deviceId: d.id });
    list.reload();
  });
  const gws = list.data?.devices ?? [];
  return (
    <section aria-labelledby="gws-h">
      <h2 id="gws-h">Gateways it is bound to</h2>
      <ErrorBox error={list.error} />
      {gws.length === 0 && !list.loading && <p class="muted">Bound to no gateway.</p>}
      <ul>
        {gws.map((g) => (
          <li key={g.id}>
            <Link href={href(registry + '/devices/' + g.id)}>{g.id}</Link>{' '}
            {can('cloudiot.devices.unbindGateway') && (
              <button type="button" onClick={() => unbind.run(g.id!)} disabled={unbind.busy}>
                Unbind from {g.id}
              </button>
            )}
          </li>
        ))}
      </ul>
      {list.data?.nextPageToken && <p class="muted">Showing the first 100 gateways.</p>}
      <ErrorBox error={unbind.error} />
    </section>
  );
}

function GatewayPanel(props: { device: Device; reload: () => void }) {
  const d = props.device;
  const registry = registryOf(d.name!);
  const can = useCan();
  const [tokens, setTokens] = useState<string[]>(['']);
  const [page, setPage] = useState(0);
  const bound = useLoad(
    (signal) =>
      call<{ devices?: Device[]; nextPageToken?: string }>(
        'GET',
        v1(registry) + '/devices',
        undefined,
        { 'gatewayListOptions.associationsGatewayId': d.id, pageSize: 50, pageToken: tokens[page], fieldMask: 'lastHeartbeatTime,lastErrorTime,blocked,gatewayConfig' },
        signal,
      ),
    [d.name, tokens[page]],
  );
  const [deviceId, setDeviceId] = useState('');
  const bind = useAction(async () => {
    await call('POST', v1(registry) + ':bindDeviceToGateway', { gatewayId: d.id, deviceId: deviceId.trim() });
    setDeviceId('');
    bound.reload();
  });
  const unbind = useAction(async (dev: string) => {
    await call('POST', v1(registry) + ':unbindDeviceFromGateway', { gatewayId: d.id, deviceId: dev });
    bound.reload();
  });
  const [method, setMethod] = useState(d.gatewayConfig?.gatewayAuthMethod || 'ASSOCIATION_ONLY');
  const saveMethod = useAction(async () => {
    await call('PATCH', v1(d.name!), { gatewayConfig: { gatewayAuthMethod: method } }, { updateMask: 'gatewayConfig.gatewayAuthMethod' });
    props.reload();
  });
  const pool = usePool();
  const conn = findConnection(pool.data?.connections, registry + '/devices/' + d.id);
  return (
    <>
      <section aria-labelledby="auth-h">
        <h2 id="auth-h">Authentication method</h2>
        <p>
          Devices attach through this gateway by: <strong>{authLabel(d.gatewayConfig?.gatewayAuthMethod)}</strong>
        </p>
        {can('cloudiot.devices.update') && (
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              saveMethod.run();
            }}
          >
            <Field label="Change the method">
              {(id) => (
                <select id={id} name="gatewayAuthMethod" value={method} onChange={(e) => setMethod(e.currentTarget.value)}>
                  <option value="ASSOCIATION_ONLY">Association only</option>
                  <option value="DEVICE_AUTH_TOKEN_ONLY">Device auth token only</option>
                  <option value="ASSOCIATION_AND_DEVICE_AUTH_TOKEN">Association and device auth token</option>
                </select>
              )}
            </Field>
            <button type="submit" disabled={saveMethod.busy}>
              Save method
            </button>
          </form>
        )}
        <ErrorBox error={saveMethod.error} />
      </section>
      <section aria-labelledby="attached-h">
        <h2 id="attached-h">Attached right now</h2>
        {conn ? (
          <HubConnection conn={conn} registry={registry} />
        ) : (
          <p class="muted">
            {pool.error
              ? 'The hub pool cannot be read here, so the attached devices are not known.'
              : 'The hub holds no connection for this gateway. Bound devices that last came through it show its id as their last gateway.'}
          </p>
        )}
      </section>
      <section aria-labelledby="bound-h">
        <h2 id="bound-h">Bound devices</h2>
        {can('cloudiot.devices.bindGateway') && (
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              bind.run();
            }}
          >
            <Field label="Device ID to bind">
              {(id) => <input id={id} name="bindDeviceId" type="text" required value={deviceId} onInput={(e) => setDeviceId(e.currentTarget.value)} />}
            </Field>
            <button type="submit" class="primary" disabled={bind.busy}>
              Bind
            </button>
          </form>
        )}
        <ErrorBox error={bind.error} />
        <ErrorBox error={unbind.error} />
        <ErrorBox error={bound.error} />
        <div class="table-wrap">
          <table id="bound">
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Connection</th>
                <th scope="col">Last gateway</th>
                {can('cloudiot.devices.unbindGateway') && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {(bound.data?.devices ?? []).map((b) => (
                <tr key={b.id}>
                  <td>
                    <Link href={href(registry + '/devices/' + b.id)}>{b.id}</Link>
                  </td>
                  <td>
                    <Connected device={b} />
                  </td>
                  <td>
                    {b.gatewayConfig?.lastAccessedGatewayId ? (
                      <>
                        {b.gatewayConfig.lastAccessedGatewayId} <Time value={b.gatewayConfig.lastAccessedGatewayTime} />
                      </>
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                  {can('cloudiot.devices.unbindGateway') && (
                    <td>
                      <button type="button" onClick={() => unbind.run(b.id!)} disabled={unbind.busy}>
                        Unbind {b.id}
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {!bound.loading && (bound.data?.devices ?? []).length === 0 && <p class="muted">No device is bound.</p>}
        <nav class="pager" aria-label="Bound device pages">
          <button type="button" disabled={page === 0} onClick={() => setPage(page - 1)}>
            ← Previous
          </button>
          <span>Page {page + 1}</span>
          <button
            type="button"
            disabled={!bound.data?.nextPageToken}
            onClick={() => {
              setTokens([...tokens.slice(0, page + 1), bound.data!.nextPageToken!]);
              setPage(page + 1);
            }}
          >
            Next →
          </button>
        </nav>
      </section>
    </>
  );
}

function authLabel(m?: string) {
  switch (m) {
    case 'DEVICE_AUTH_TOKEN_ONLY':
      return 'the device’s own token only';
    case 'ASSOCIATION_AND_DEVICE_AUTH_TOKEN':
      return 'binding and the device’s own token';
    default:
      return 'binding (association only)';
  }
}

type Decoding = 'text' | 'json' | 'hex';

function DecodeSelect(props: { value: Decoding; onChange: (v: Decoding) => void; label: string }) {
  return (
    <Field label={props.label}>
      {(id) => (
        <select id={id} name="decode" value={props.value} onChange={(e) => props.onChange(e.currentTarget.value as Decoding)}>
          <option value="text">Text</option>
          <option value="json">JSON</option>
          <option value="hex">Hex</option>
        </select>
      )}
    </Field>
  );
}

function Configs(props: { name: string }) {
  const can = useCan();
  const list = useLoad((signal) => call<{ deviceConfigs?: DeviceConfig[] }>('GET', v1(props.name) + '/configVersions', undefined, { numVersions: 10 }, signal), [props.name]);
  usePoll(list.refresh, 2000);
  const [as, setAs] = useState<Decoding>('text');
  const [mode, setMode] = useState<'text' | 'base64'>('text');
  const [data, setData] = useState('');
  const [version, setVersion] = useState('');
  const set = useAction(async () => {
    if (mode === 'base64' && !isValidBase64(data)) throw new Error('The data is not valid base64.');
    const body: Record<string, string> = { binaryData: mode === 'text' ? b64encodeText(data) : data.replace(/\s+/g, '') };
    if (version.trim()) body.versionToUpdate = version.trim();
    const c = await call<DeviceConfig>('POST', v1(props.name) + ':modifyCloudToDeviceConfig', body);
    set.setDone(`Config version ${c.version} saved.`);
    setVersion('');
    list.reload();
  });
  const configs = list.data?.deviceConfigs ?? [];
  return (
    <>
      {can('cloudiot.devices.updateConfig') && (
        <section aria-labelledby="setcfg-h">
          <h2 id="setcfg-h">Set a new configuration</h2>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              set.run();
            }}
          >
            <fieldset>
              <legend>Format</legend>
              <label class="check">
                <input type="radio" name="cfgMode" value="text" checked={mode === 'text'} onChange={() => setMode('text')} /> Text
              </label>
              <label class="check">
                <input type="radio" name="cfgMode" value="base64" checked={mode === 'base64'} onChange={() => setMode('base64')} /> Base64
              </label>
            </fieldset>
            <Field label="Configuration data">{(id) => <textarea id={id} name="configData" value={data} onInput={(e) => setData(e.currentTarget.value)} />}</Field>
            <Field label="Version to update (optional)" hint="The update is refused unless this is the current version.">
              {(id, h) => <input id={id} name="versionToUpdate" type="number" min="1" aria-describedby={h} value={version} onInput={(e) => setVersion(e.currentTarget.value)} />}
            </Field>
            <ErrorBox error={set.error} />
            {set.done && <Notice>{set.done}</Notice>}
            <button type="submit" class="primary" disabled={set.busy}>
              Update configuration
            </button>
          </form>
        </section>
      )}
      <section aria-labelledby="cfgs-h">
        <div class="spread">
          <h2 id="cfgs-h">Configuration history</h2>
          <DecodeSelect label="Show data as" value={as} onChange={setAs} />
        </div>
        <ErrorBox error={list.error} />
        <div class="table-wrap">
          <table id="configs">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Set</th>
                <th scope="col">Acknowledged by the device</th>
                <th scope="col">Data</th>
              </tr>
            </thead>
            <tbody>
              {configs.map((c) => (
                <tr key={c.version}>
                  <td>{c.version}</td>
                  <td>
                    <Time value={c.cloudUpdateTime} />
                  </td>
                  <td class="ack">{c.deviceAckTime ? <Time value={c.deviceAckTime} /> : <span class="muted">not yet</span>}</td>
                  <td>
                    <pre>{decode(b64decode(c.binaryData), as)}</pre>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <p class="muted">The newest 10 versions.</p>
      </section>
    </>
  );
}

function States(props: { name: string; device: Device }) {
  const list = useLoad((signal) => call<{ deviceStates?: DeviceState[] }>('GET', v1(props.name) + '/states', undefined, { numStates: 10 }, signal), [props.name]);
  usePoll(list.refresh, 2000);
  const [as, setAs] = useState<Decoding>('text');
  const states = list.data?.deviceStates ?? [];
  return (
    <section aria-labelledby="states-h">
      <div class="spread">
        <h2 id="states-h">State history</h2>
        <DecodeSelect label="Show states as" value={as} onChange={setAs} />
      </div>
      <p class="muted">
        The newest states (up to 10 are kept); last state at <Time value={props.device.lastStateTime} />.
      </p>
      <ErrorBox error={list.error} />
      {!list.loading && states.length === 0 && <p>No state reported yet.</p>}
      <div class="table-wrap">
        <table id="states">
          <thead>
            <tr>
              <th scope="col">Received</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {states.map((s, i) => (
              <tr key={s.updateTime! + i}>
                <td>
                  <Time value={s.updateTime} />
                </td>
                <td>
                  <pre class="state-data">{decode(b64decode(s.binaryData), as)}</pre>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Commands(props: { name: string }) {
  const can = useCan();
  const [mode, setMode] = useState<'text' | 'base64'>('text');
  const [data, setData] = useState('');
  const [subfolder, setSubfolder] = useState('');
  const send = useAction(async () => {
    if (mode === 'base64' && !isValidBase64(data)) throw new Error('The data is not valid base64.');
    const body: Record<string, string> = { binaryData: mode === 'text' ? b64encodeText(data) : data.replace(/\s+/g, '') };
    if (subfolder.trim()) body.subfolder = subfolder.trim();
    await call('POST', v1(props.name) + ':sendCommandToDevice', body);
    send.setDone('Command delivered to the device.');
  });
  if (!can('cloudiot.devices.sendCommand')) return <p class="muted">Your token cannot send commands.</p>;
  return (
    <section aria-labelledby="cmd-h">
      <h2 id="cmd-h">Send a command</h2>
      <p class="muted">The device must be connected and subscribed to its commands topic.</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          send.run();
        }}
      >
        <fieldset>
          <legend>Format</legend>
          <label class="check">
            <input type="radio" name="cmdMode" value="text" checked={mode === 'text'} onChange={() => setMode('text')} /> Text
          </label>
          <label class="check">
            <input type="radio" name="cmdMode" value="base64" checked={mode === 'base64'} onChange={() => setMode('base64')} /> Base64
          </label>
        </fieldset>
        <Field label="Command data">{(id) => <textarea id={id} name="commandData" value={data} onInput={(e) => setData(e.currentTarget.value)} />}</Field>
        <Field label="Subfolder (optional)">{(id) => <input id={id} name="subfolder" type="text" value={subfolder} onInput={(e) => setSubfolder(e.currentTarget.value)} />}</Field>
        <ErrorBox error={send.error} />
        {send.done && <Notice>{send.done}</Notice>}
        <button type="submit" class="primary" disabled={send.busy}>
          Send command
        </button>
      </form>
    </section>
  );
}
