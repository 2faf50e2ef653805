// The hub's pool: the gateway connections it holds and the devices attached
// to each, read from the hub's GetPool and ListGateways (Connect JSON)
// through /console/hub/ on this origin.
import { call } from '../api';
import { href } from '../router';
import { ErrorBox, lastPart, Link, Time, useLoad, usePoll } from '../ui';

export interface AttachedDevice { deviceId?: string; holders?: number; attached?: boolean }
export interface GatewayConnection {
  gateway?: string;
  state?: string;
  reconnects?: string;
  connectTime?: string;
  tokenExpireTime?: string;
  attachedDevices?: AttachedDevice[];
  holders?: number;
}
interface Gateway { name?: string; algorithm?: string; keySource?: string; state?: string; attachedDeviceCount?: number }

const hubCall = <T,>(method: string, signal?: AbortSignal) =>
  call<T>('POST', '/console/hub/passerelle.hub.v1.Hub/' + method, {}, undefined, signal);

export function usePool() {
  const pool = useLoad((signal) => hubCall<{ connections?: GatewayConnection[] }>('GetPool', signal), []);
  usePoll(pool.refresh, 3000);
  return pool;
}

export function findConnection(conns: GatewayConnection[] | undefined, gateway: string) {
  return conns?.find((c) => c.gateway === gateway);
}

const stateLabel = (s?: string) => (s ?? 'CONNECTION_STATE_UNSPECIFIED').replace('CONNECTION_STATE_', '').toLowerCase();

function StateBadge(props: { state?: string }) {
  const s = stateLabel(props.state);
  return <span class={'badge ' + (s === 'connected' ? 'ok' : s === 'reconnecting' ? 'warn' : '')}>{s}</span>;
}

export function HubConnection(props: { conn: GatewayConnection; registry: string }) {
  const c = props.conn;
  return (
    <>
      <p>
        <StateBadge state={c.state} /> since <Time value={c.connectTime} />, {c.reconnects ?? '0'} reconnects, JWT until <Time value={c.tokenExpireTime} />.
      </p>
      {(c.attachedDevices ?? []).length === 0 ? (
        <p class="muted">No device attached.</p>
      ) : (
        <ul>
          {(c.attachedDevices ?? []).map((d) => (
            <li key={d.deviceId}>
              <Link href={href(props.registry + '/devices/' + d.deviceId)}>{d.deviceId}</Link> {d.attached ? '(attached)' : '(attaching)'}, {d.holders ?? 0} calls
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

export function HubPool() {
  const pool = usePool();
  const gws = useLoad((signal) => hubCall<{ gateways?: Gateway[] }>('ListGateways', signal), []);
  const conns = pool.data?.connections ?? [];
  return (
    <>
      <h1>Hub pool</h1>
      <p class="muted">The gateway connections the hub holds for the backend services that speak for devices, refreshed every 3 seconds.</p>
      <ErrorBox error={pool.error} />
      <h2>Connections</h2>
      {!pool.loading && !pool.error && conns.length === 0 && <p>The hub holds no connection now.</p>}
      <div class="table-wrap">
        <table id="pool">
          <thead>
            <tr>
              <th scope="col">Gateway</th>
              <th scope="col">State</th>
              <th scope="col">Connected since</th>
              <th scope="col">Reconnects</th>
              <th scope="col">JWT expires</th>
              <th scope="col">Calls</th>
              <th scope="col">Attached devices</th>
            </tr>
          </thead>
          <tbody>
            {conns.map((c) => {
              const registry = (c.gateway ?? '').split('/').slice(0, 6).join('/');
              return (
                <tr key={c.gateway}>
                  <td>
                    <Link href={href(c.gateway!)}>{lastPart(c.gateway ?? '')}</Link>
                    <div class="muted mono">{registry}</div>
                  </td>
                  <td>
                    <StateBadge state={c.state} />
                  </td>
                  <td>
                    <Time value={c.connectTime} />
                  </td>
                  <td>{c.reconnects ?? '0'}</td>
                  <td>
                    <Time value={c.tokenExpireTime} />
                  </td>
                  <td>{c.holders ?? 0}</td>
                  <td>
                    {(c.attachedDevices ?? []).map((d) => (
                      <div key={d.deviceId}>
                        <Link href={href(registry + '/devices/' + d.deviceId)}>{d.deviceId}</Link>
                        {d.attached ? '' : ' (attaching)'}
                      </div>
                    ))}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <h2>Gateways the hub has keys for</h2>
      <ErrorBox error={gws.error} />
      <div class="table-wrap">
        <table id="hub-gateways">
          <thead>
            <tr>
              <th scope="col">Gateway</th>
              <th scope="col">Algorithm</th>
              <th scope="col">Key from</th>
              <th scope="col">State</th>
              <th scope="col">Attached</th>
            </tr>
          </thead>
          <tbody>
            {(gws.data?.gateways ?? []).map((g) => (
              <tr key={g.name}>
                <td>
                  <Link href={href(g.name!)}>{g.name}</Link>
                </td>
                <td>{(g.algorithm ?? '').replace('ALGORITHM_', '')}</td>
                <td>{(g.keySource ?? '').replace('KEY_SOURCE_', '').toLowerCase().replace('_', ' ')}</td>
                <td>
                  <StateBadge state={g.state} />
                </td>
                <td>{g.attachedDeviceCount ?? 0}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
