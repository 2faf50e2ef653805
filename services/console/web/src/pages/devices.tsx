// A registry's devices: a paged list with search and filters, and the
// create form.
import { useEffect, useRef, useState } from 'preact/hooks';
import { call, Device, Registry, v1 } from '../api';
import { href, navigate } from '../router';
import { ErrorBox, Field, lastPart, Link, PagerNav, Time, useAction, useCan, useLoad } from '../ui';

const PAGE_SIZE = 50;
// A search the API cannot do (an id prefix, blocked devices) reads pages of
// this size and keeps what matches.
const SCAN_PAGE = 1000;
const LIST_FIELDS = 'blocked,lastHeartbeatTime,lastEventTime,lastStateTime,lastErrorTime,lastErrorStatus,gatewayConfig';

/** ONLINE_WINDOW_MS: a device is shown connected when the bridge saw it this recently and recorded no error since. */
export const ONLINE_WINDOW_MS = 2 * 60 * 1000;

export function connected(d: Device): boolean {
  if (d.blocked || !d.lastHeartbeatTime) return false;
  const hb = Date.parse(d.lastHeartbeatTime);
  if (d.lastErrorTime && Date.parse(d.lastErrorTime) >= hb) return false;
  return Date.now() - hb < ONLINE_WINDOW_MS;
}

export function Connected(props: { device: Device }) {
  const on = connected(props.device);
  return (
    <span class={'badge ' + (on ? 'ok' : '')} title="From the last heartbeat: seen within 2 minutes, with no error since">
      {on ? 'connected' : 'not connected'}
    </span>
  );
}

interface Filters {
  prefix: string;
  type: '' | 'GATEWAY' | 'NON_GATEWAY';
  blocked: boolean;
  boundTo: string;
}

interface Page {
  devices: Device[];
  next: string; // a page token, or '' at the end
  scanned?: number;
}

// Cursor of a scanning search: the API page token to read next and how
// many matches of it were shown already.
function encodeCursor(token: string, skip: number) {
  return JSON.stringify([token, skip]);
}

async function loadPage(registry: string, f: Filters, cursor: string, signal: AbortSignal): Promise<Page> {
  const q = {
    fieldMask: LIST_FIELDS,
    'gatewayListOptions.gatewayType': f.type || undefined,
    'gatewayListOptions.associationsGatewayId': f.boundTo.trim() || undefined,
  };
  const scanning = !!f.prefix.trim() || f.blocked;
  if (!scanning) {
    const r = await call<{ devices?: Device[]; nextPageToken?: string }>('GET', v1(registry) + '/devices', undefined, { ...q, pageSize: PAGE_SIZE, pageToken: cursor }, signal);
    return { devices: r.devices ?? [], next: r.nextPageToken ?? '' };
  }
  const prefix = f.prefix.trim();
  const match = (d: Device) => (!prefix || (d.id ?? '').startsWith(prefix)) && (!f.blocked || !!d.blocked);
  let [token, skip] = cursor ? (JSON.parse(cursor) as [string, number]) : ['', 0];
  const out: Device[] = [];
  let scanned = 0;
  for (;;) {
    const r = await call<{ devices?: Device[]; nextPageToken?: string }>('GET', v1(registry) + '/devices', undefined, { ...q, pageSize: SCAN_PAGE, pageToken: token }, signal);
    const matches = (r.devices ?? []).filter(match);
    scanned += (r.devices ?? []).length;
    const take = matches.slice(skip, skip + PAGE_SIZE - out.length);
    out.push(...take);
    if (out.length >= PAGE_SIZE) {
      const used = skip + take.length;
      if (used < matches.length) return { devices: out, next: encodeCursor(token, used), scanned };
      return { devices: out, next: r.nextPageToken ? encodeCursor(r.nextPageToken, 0) : '', scanned };
    }
    skip = 0;
    if (!r.nextPageToken) return { devices: out, next: '', scanned };
    token = r.nextPageToken;
  }
}

export function Devices(props: { registry: string }) {
  const can = useCan();
  const reg = useLoad((signal) => call<Registry>('GET', v1(props.registry), undefined, undefined, signal), [props.registry]);
  const [draft, setDraft] = useState<Filters>({ prefix: '', type: '', blocked: false, boundTo: '' });
  const [filters, setFilters] = useState<Filters>(draft);
  const [cursors, setCursors] = useState<string[]>(['']);
  const [index, setIndex] = useState(0);
  const started = useRef(0);
  const [shownIn, setShownIn] = useState<number | null>(null);
  const list = useLoad(
    (signal) => {
      started.current = performance.now();
      return loadPage(props.registry, filters, cursors[index], signal);
    },
    [props.registry, filters, cursors[index]],
  );
  useEffect(() => {
    if (!list.loading && list.data) setShownIn(Math.round(performance.now() - started.current));
  }, [list.loading, list.data]);
  const id = lastPart(props.registry);
  const parent = props.registry.split('/').slice(0, 4).join('/');
  return (
    <>
      <p class="crumbs">
        <Link href={href(parent + '/registries')}>Registries</Link> / {id}
      </p>
      <div class="spread">
        <h1>Registry {id}</h1>
        <div class="row">
          <Link class="button" href={href(props.registry, 'live')}>
            Live telemetry
          </Link>
          {can('cloudiot.registries.update') && (
            <Link class="button" href={href(props.registry, 'edit')}>
              Edit registry
            </Link>
          )}
          {can('cloudiot.devices.create') && (
            <Link class="button primary" href={href(props.registry, 'devices/-new')}>
              Create device
            </Link>
          )}
        </div>
      </div>
      <ErrorBox error={reg.error} />
      {reg.data && (
        <p class="muted">
          Events to <code>{reg.data.eventNotificationConfigs?.map((c) => c.pubsubTopicName).join(', ') || 'no topic'}</code>, states to{' '}
          <code>{reg.data.stateNotificationConfig?.pubsubTopicName || 'no topic'}</code>.
        </p>
      )}
      <h2>Devices</h2>
      <form
        class="inline"
        role="search"
        aria-label="Search devices"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters({ ...draft });
          setCursors(['']);
          setIndex(0);
        }}
      >
        <Field label="ID starts with">
          {(fid) => <input id={fid} name="prefix" type="search" value={draft.prefix} onInput={(e) => setDraft({ ...draft, prefix: e.currentTarget.value })} />}
        </Field>
        <Field label="Type">
          {(fid) => (
            <select id={fid} name="type" value={draft.type} onChange={(e) => setDraft({ ...draft, type: e.currentTarget.value as Filters['type'] })}>
              <option value="">All devices</option>
              <option value="GATEWAY">Gateways only</option>
              <option value="NON_GATEWAY">Non-gateways only</option>
            </select>
          )}
        </Field>
        <Field label="Bound to gateway">
          {(fid) => <input id={fid} name="boundTo" type="text" placeholder="gateway id" value={draft.boundTo} onInput={(e) => setDraft({ ...draft, boundTo: e.currentTarget.value })} />}
        </Field>
        <label class="check">
          <input type="checkbox" name="blocked" checked={draft.blocked} onChange={(e) => setDraft({ ...draft, blocked: e.currentTarget.checked })} /> Blocked only
        </label>
        <button type="submit" class="primary">
          Search
        </button>
      </form>
      <ErrorBox error={list.error} />
      <p class="muted" aria-live="polite" id="list-status">
        {list.loading
          ? 'Loading…'
          : list.data
            ? `${list.data.devices.length} device${list.data.devices.length === 1 ? '' : 's'} on page ${index + 1}` +
              (list.data.scanned !== undefined ? ` (searched ${list.data.scanned} devices)` : '') +
              (shownIn !== null ? `, shown in ${shownIn} ms` : '')
            : ''}
      </p>
      <div class="table-wrap">
        <table id="devices">
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Type</th>
              <th scope="col">Connected</th>
              <th scope="col">Last heartbeat</th>
              <th scope="col">Last event</th>
              <th scope="col">Last state</th>
              <th scope="col">Last error</th>
              <th scope="col">Blocked</th>
            </tr>
          </thead>
          <tbody>
            {(list.data?.devices ?? []).map((d) => (
              <tr key={d.id}>
                <td>
                  <Link href={href(props.registry + '/devices/' + d.id)}>{d.id}</Link>
                </td>
                <td>{d.gatewayConfig?.gatewayType === 'GATEWAY' ? 'gateway' : 'device'}</td>
                <td>
                  <Connected device={d} />
                </td>
                <td>
                  <Time value={d.lastHeartbeatTime} />
                </td>
                <td>
                  <Time value={d.lastEventTime} />
                </td>
                <td>
                  <Time value={d.lastStateTime} />
                </td>
                <td>
                  {d.lastErrorStatus?.message ? (
                    <>
                      <span>{d.lastErrorStatus.message}</span> <Time value={d.lastErrorTime} />
                    </>
                  ) : (
                    <span class="muted">none</span>
                  )}
                </td>
                <td>{d.blocked ? <span class="badge bad">blocked</span> : 'no'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {!list.loading && list.data && list.data.devices.length === 0 && <p>No devices match.</p>}
      <PagerNav
        label="Device pages"
        page={index + 1}
        hasNext={!!list.data?.next}
        onPrev={() => setIndex(Math.max(0, index - 1))}
        onNext={() => {
          setCursors([...cursors.slice(0, index + 1), list.data!.next]);
          setIndex(index + 1);
        }}
      />
    </>
  );
}

export function parseMetadata(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const i = line.indexOf('=');
    if (i <= 0) throw new Error(`metadata line "${line}" is not key=value`);
    out[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  return out;
}

export const KEY_FORMATS = ['ES256_PEM', 'ES256_X509_PEM', 'RSA_PEM', 'RSA_X509_PEM'];

export function NewDevice(props: { registry: string }) {
  const [id, setId] = useState('');
  const [gateway, setGateway] = useState(false);
  const [auth, setAuth] = useState('ASSOCIATION_ONLY');
  const [format, setFormat] = useState('ES256_PEM');
  const [key, setKey] = useState('');
  const [metadata, setMetadata] = useState('');
  const [blocked, setBlocked] = useState(false);
  const save = useAction(async () => {
    const body: Device = {
      id: id.trim(),
      blocked,
      metadata: parseMetadata(metadata),
      credentials: key.trim() ? [{ publicKey: { format, key: key.trim() } }] : [],
      gatewayConfig: gateway ? { gatewayType: 'GATEWAY', gatewayAuthMethod: auth } : { gatewayType: 'NON_GATEWAY' },
    };
    const d = await call<Device>('POST', v1(props.registry) + '/devices', body);
    navigate(href(props.registry + '/devices/' + (d.id ?? id.trim())));
  });
  return (
    <>
      <p class="crumbs">
        <Link href={href(props.registry)}>Registry {lastPart(props.registry)}</Link>
      </p>
      <h1>Create a device</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          save.run();
        }}
      >
        <Field label="Device ID">{(fid) => <input id={fid} name="deviceId" type="text" required value={id} onInput={(e) => setId(e.currentTarget.value)} />}</Field>
        <label class="check">
          <input type="checkbox" name="gateway" checked={gateway} onChange={(e) => setGateway(e.currentTarget.checked)} /> This device is a gateway
        </label>
        {gateway && (
          <Field label="Gateway authentication method">
            {(fid) => (
              <select id={fid} name="authMethod" value={auth} onChange={(e) => setAuth(e.currentTarget.value)}>
                <option value="ASSOCIATION_ONLY">Association only</option>
                <option value="DEVICE_AUTH_TOKEN_ONLY">Device auth token only</option>
                <option value="ASSOCIATION_AND_DEVICE_AUTH_TOKEN">Association and device auth token</option>
              </select>
            )}
          </Field>
        )}
        <fieldset>
          <legend>Credential (optional)</legend>
          <Field label="Public key format">
            {(fid) => (
              <select id={fid} name="keyFormat" value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
                {KEY_FORMATS.map((f) => (
                  <option key={f}>{f}</option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Public key (PEM)">{(fid) => <textarea id={fid} name="publicKey" value={key} onInput={(e) => setKey(e.currentTarget.value)} />}</Field>
        </fieldset>
        <Field label="Metadata" hint="One key=value a line.">
          {(fid, d) => <textarea id={fid} name="metadata" aria-describedby={d} value={metadata} onInput={(e) => setMetadata(e.currentTarget.value)} />}
        </Field>
        <label class="check">
          <input type="checkbox" name="blocked" checked={blocked} onChange={(e) => setBlocked(e.currentTarget.checked)} /> Blocked
        </label>
        <ErrorBox error={save.error} />
        <div class="row">
          <button type="submit" class="primary" disabled={save.busy}>
            Create
          </button>
          <Link href={href(props.registry)}>Cancel</Link>
        </div>
      </form>
    </>
  );
}
