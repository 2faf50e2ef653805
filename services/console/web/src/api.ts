// The console's only way to the server: the public REST APIs (Cloud IoT's
// DeviceManager v1, Pub/Sub v1, the hub's Connect JSON) on this page's own
// origin. The token lives in sessionStorage and goes only to relative URLs.

const TOKEN_KEY = 'passerelle.token';

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error from an API, with the server's message. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly code: string) {
    super(message);
  }
}

type Query = Record<string, string | number | boolean | undefined | null | string[]>;

function qs(q?: Query): string {
  if (!q) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => p.append(k, x));
    else p.set(k, String(v));
  }
  const s = p.toString();
  return s ? '?' + s : '';
}

/** call sends one request to a path of this origin (it must start with /). */
export async function call<T>(method: string, path: string, body?: unknown, q?: Query, signal?: AbortSignal): Promise<T> {
  if (!path.startsWith('/') || path.startsWith('//')) throw new Error('the console calls its own origin only');
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path + qs(q), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError('The server does not answer: ' + (e as Error).message, 0, 'UNAVAILABLE');
  }
  const text = await res.text();
  let data: any = undefined;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const err = data?.error;
    const msg = err?.message || data?.message || text || res.statusText;
    throw new ApiError(String(msg), res.status, String(err?.status || data?.code || res.status));
  }
  return (data ?? {}) as T;
}

// --- Cloud IoT types (the subset the console shows) ---

export interface Status { code?: number; message?: string }
export interface PublicKeyCredential { format: string; key: string }
export interface DeviceCredential { publicKey?: PublicKeyCredential; expirationTime?: string }
export interface RegistryCredential { publicKeyCertificate?: { format: string; certificate: string; x509Details?: Record<string, string> } }
export interface EventNotificationConfig { subfolderMatches?: string; pubsubTopicName?: string }
export interface Registry {
  id?: string;
  name?: string;
  eventNotificationConfigs?: EventNotificationConfig[];
  stateNotificationConfig?: { pubsubTopicName?: string };
  mqttConfig?: { mqttEnabledState?: string };
  httpConfig?: { httpEnabledState?: string };
  logLevel?: string;
  credentials?: RegistryCredential[];
}
export interface Device {
  id?: string;
  name?: string;
  numId?: string;
  credentials?: DeviceCredential[];
  lastHeartbeatTime?: string;
  lastEventTime?: string;
  lastStateTime?: string;
  lastConfigAckTime?: string;
  lastConfigSendTime?: string;
  blocked?: boolean;
  lastErrorTime?: string;
  lastErrorStatus?: Status;
  config?: DeviceConfig;
  state?: DeviceState;
  logLevel?: string;
  metadata?: Record<string, string>;
  gatewayConfig?: { gatewayType?: string; gatewayAuthMethod?: string; lastAccessedGatewayId?: string; lastAccessedGatewayTime?: string };
}
export interface DeviceConfig { version?: string; cloudUpdateTime?: string; deviceAckTime?: string; binaryData?: string }
export interface DeviceState { updateTime?: string; binaryData?: string }

/** v1 is the REST path of a resource name, each segment escaped: an id may hold '%' or '+'. */
export const v1 = (name: string) => '/v1/' + name.split('/').map(encodeURIComponent).join('/');

export function registryName(project: string, location: string, id: string): string {
  return `projects/${project}/locations/${location}/registries/${id}`;
}

/** The permissions the console asks about, Cloud IoT's names. */
export const PERMISSIONS = [
  'cloudiot.registries.get', 'cloudiot.registries.list', 'cloudiot.registries.create', 'cloudiot.registries.update',
  'cloudiot.registries.delete', 'cloudiot.devices.get', 'cloudiot.devices.list', 'cloudiot.devices.create',
  'cloudiot.devices.update', 'cloudiot.devices.delete', 'cloudiot.devices.updateConfig', 'cloudiot.devices.sendCommand',
  'cloudiot.devices.bindGateway', 'cloudiot.devices.unbindGateway',
];

/** testPermissions asks which permissions the token holds (the same on every registry). */
export async function testPermissions(project: string, location: string): Promise<Set<string>> {
  // Any registry name will do: Passerelle answers from the token's role.
  const r = await call<{ permissions?: string[] }>('POST', v1(registryName(project, location, 'console')) + ':testIamPermissions', { permissions: PERMISSIONS });
  return new Set(r.permissions ?? []);
}

// --- bytes ---

export function b64encodeText(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  bytes.forEach((b) => (bin += String.fromCharCode(b)));
  return btoa(bin);
}
export function b64decode(s: string | undefined): Uint8Array {
  if (!s) return new Uint8Array();
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
export function isValidBase64(s: string): boolean {
  return /^[A-Za-z0-9+/]*={0,2}$/.test(s.replace(/\s+/g, '')) && s.replace(/\s+/g, '').length % 4 === 0;
}

/** decode shows bytes as text, pretty JSON or hex. */
export function decode(bytes: Uint8Array, as: 'text' | 'json' | 'hex'): string {
  if (as === 'hex') {
    const parts: string[] = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const row = Array.from(bytes.slice(i, i + 16)).map((b) => b.toString(16).padStart(2, '0'));
      parts.push(i.toString(16).padStart(6, '0') + '  ' + row.join(' '));
    }
    return parts.join('\n');
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (as === 'json') {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (e) {
      return 'not JSON (' + (e as Error).message + '):\n' + text;
    }
  }
  return text;
}
