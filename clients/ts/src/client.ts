// connectHub: a Connect client of the hub over gRPC (HTTP/2), with a token
// and a retry policy.
import {Code, ConnectError, createClient} from "@connectrpc/connect";
import type {Client, Interceptor, Transport} from "@connectrpc/connect";
import {Http2SessionManager, createGrpcTransport} from "@connectrpc/connect-node";
import {Hub} from "./gen/passerelle/hub/v1/hub_pb.js";

/**
 * RetryPolicy says how a call that fails with a retryable code is tried
 * again: up to maxAttempts in all, after a random wait of up to
 * initialBackoffMs, then multiplied by backoffMultiplier each time, at most
 * maxBackoffMs (gRPC's retry policy, with its jitter).
 */
export interface RetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  backoffMultiplier: number;
  retryableCodes: Code[];
  /** Methods never retried, by their proto name. */
  notRetried: string[];
}

/**
 * The default: UNAVAILABLE (the hub unreachable or restarting, or the
 * gateway's connection down) is retried, up to 5 attempts, waiting up to
 * 0.2 s, 0.4 s, 0.8 s, 1.6 s. Only unary calls are retried (Connect has no
 * retries of its own; a stream that fails is the caller's to open again).
 * CreateGateway is not: a second attempt after a lost answer would report
 * ALREADY_EXISTS. A retried PublishEvent may deliver an event twice, as
 * MQTT QoS 1 does. The same policy as the Python and Java clients'.
 */
export const defaultRetryPolicy: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 5,
  initialBackoffMs: 200,
  maxBackoffMs: 5000,
  backoffMultiplier: 2,
  retryableCodes: [Code.Unavailable],
  notRetried: ["CreateGateway"],
});

/** HubOptions are connectHub's options. */
export interface HubOptions {
  /**
   * Sent with every call as "authorization: Bearer <token>": a token of the
   * hub's tokens file, or passerelle serve's admin token. None by default
   * (a hub started with --insecure-no-auth).
   */
  token?: string;
  /**
   * Use TLS, checking the hub's certificate against ca, or the system's
   * roots. Default: plaintext, as passerelle serve's hub is. A ca turns
   * TLS on too; an address with a scheme says it itself (https:// or
   * http://).
   */
  tls?: boolean;
  /** The CA (PEM) the hub's certificate is checked against. */
  ca?: string | Buffer;
  /** The retry policy of unary calls; false for none. Default: defaultRetryPolicy. */
  retry?: RetryPolicy | false;
  /** More interceptors, run after the token's and before the retries. */
  interceptors?: Interceptor[];
}

/** HubConnection is a hub client and what closes it. */
export interface HubConnection {
  /** The hub's RPCs: hub.attach, hub.subscribeConfig, hub.publishState, ... */
  hub: Client<typeof Hub>;
  /** The transport, for createClient with other interceptors. */
  transport: Transport;
  /** Close the HTTP/2 connection; calls still open fail. */
  close(): void;
}

/**
 * connectHub makes a client of the hub at address ("host:port", or an
 * http:// or https:// URL). It connects on the first call and again after
 * a lost connection, on the next call.
 */
export function connectHub(address: string, options: HubOptions = {}): HubConnection {
  const hasScheme = /^https?:\/\//.test(address);
  const tls = hasScheme ? address.startsWith("https://") : Boolean(options.tls || options.ca !== undefined);
  const baseUrl = hasScheme ? address : `${tls ? "https" : "http"}://${address}`;
  const interceptors: Interceptor[] = [];
  if (options.token) interceptors.push(bearer(options.token));
  interceptors.push(...(options.interceptors ?? []));
  if (options.retry !== false) interceptors.push(retryInterceptor(options.retry ?? defaultRetryPolicy));
  const sessionManager = new Http2SessionManager(baseUrl, {}, options.ca !== undefined ? {ca: options.ca} : {});
  const transport = createGrpcTransport({baseUrl, sessionManager, interceptors});
  return {hub: createClient(Hub, transport), transport, close: () => sessionManager.abort()};
}

function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** retryInterceptor retries unary calls as policy says. */
export function retryInterceptor(policy: RetryPolicy): Interceptor {
  return (next) => async (req) => {
    if (req.stream || policy.notRetried.includes(req.method.name)) return next(req);
    let backoff = policy.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (attempt >= policy.maxAttempts || !policy.retryableCodes.includes(code) || req.signal.aborted) throw err;
      }
      await sleep(Math.random() * backoff, req.signal);
      backoff = Math.min(backoff * policy.backoffMultiplier, policy.maxBackoffMs);
    }
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, {once: true});
  });
}
