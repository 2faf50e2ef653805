// Live telemetry: a short-lived Pub/Sub subscription on the registry's
// event topic, pulled (waiting for messages) while the page is open and
// deleted when it closes.
import { useEffect, useRef, useState } from 'preact/hooks';
import { b64decode, call, decode, Registry, v1 } from '../api';
import { href } from '../router';
import { ErrorBox, Field, lastPart, Link, Time, useLoad } from '../ui';

interface Received {
  ackId: string;
  message: { data?: string; attributes?: Record<string, string>; messageId?: string; publishTime?: string };
}

const KEEP = 100;

export function Live(props: { registry: string }) {
  const reg = useLoad((signal) => call<Registry>('GET', v1(props.registry), undefined, undefined, signal), [props.registry]);
  const stateTopic = reg.data?.stateNotificationConfig?.pubsubTopicName ?? '';
  const topics = Array.from(new Set([...(reg.data?.eventNotificationConfigs ?? []).map((c) => c.pubsubTopicName!), stateTopic].filter(Boolean)));
  const [topic, setTopic] = useState('');
  useEffect(() => {
    if (!topic && topics.length) setTopic(topics[0]);
  }, [topics.join(',')]);
  return (
    <>
      <p class="crumbs">
        <Link href={href(props.registry)}>Registry {lastPart(props.registry)}</Link>
      </p>
      <h1>Live telemetry of {lastPart(props.registry)}</h1>
      <ErrorBox error={reg.error} />
      {reg.data && topics.length === 0 && <p>This registry sends its events and states to no Pub/Sub topic: set a topic on the registry first.</p>}
      {topics.length > 1 && (
        <Field label="Topic">
          {(id) => (
            <select id={id} name="topic" value={topic} onChange={(e) => setTopic(e.currentTarget.value)}>
              {topics.map((t) => (
                <option key={t} value={t}>
                  {t === stateTopic ? `${t} (states)` : `${t} (events)`}
                </option>
              ))}
            </select>
          )}
        </Field>
      )}
      {topic && <Stream key={topic} topic={topic} registry={props.registry} />}
    </>
  );
}

function Stream(props: { topic: string; registry: string }) {
  const [events, setEvents] = useState<Received[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState('Subscribing…');
  const [paused, setPaused] = useState(false);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  const [as, setAs] = useState<'text' | 'json' | 'hex'>('text');
  useEffect(() => {
    const project = props.topic.split('/')[1];
    const rnd = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('');
    const sub = `projects/${project}/subscriptions/console-live-${lastPart(props.registry)}-${rnd}`;
    const ctl = new AbortController();
    let created = false;
    const remove = () => {
      if (!created) return;
      created = false;
      // keepalive: the delete still goes out when the page closes.
      const token = sessionStorage.getItem('passerelle.token');
      fetch(v1(sub), { method: 'DELETE', keepalive: true, headers: token ? { Authorization: 'Bearer ' + token } : {}, credentials: 'omit' }).catch(() => {});
    };
    addEventListener('pagehide', remove);
    (async () => {
      try {
        // Expires a day after its last use even if the delete never comes.
        await call('PUT', v1(sub), { topic: props.topic, ackDeadlineSeconds: 10, expirationPolicy: { ttl: '86400s' } }, undefined, ctl.signal);
        created = true;
        setStatus('Listening for new messages');
        while (!ctl.signal.aborted) {
          if (pausedRef.current) {
            await new Promise((r) => setTimeout(r, 500));
            continue;
          }
          const r = await call<{ receivedMessages?: Received[] }>('POST', v1(sub) + ':pull', { maxMessages: 100, returnImmediately: false }, undefined, ctl.signal);
          const got = r.receivedMessages ?? [];
          if (got.length) {
            await call('POST', v1(sub) + ':acknowledge', { ackIds: got.map((m) => m.ackId) }, undefined, ctl.signal);
            setEvents((old) => [...got.reverse(), ...old].slice(0, KEEP));
          }
          setError(null);
        }
      } catch (e) {
        if ((e as Error).name !== 'AbortError') {
          setError(e);
          setStatus('Stopped');
        }
      }
    })();
    return () => {
      ctl.abort();
      removeEventListener('pagehide', remove);
      remove();
    };
  }, [props.topic]);
  return (
    <section aria-labelledby="events-h">
      <div class="spread">
        <h2 id="events-h">Newest messages</h2>
        <div class="row">
          <Field label="Show data as">
            {(id) => (
              <select id={id} value={as} onChange={(e) => setAs(e.currentTarget.value as 'text' | 'json' | 'hex')}>
                <option value="text">Text</option>
                <option value="json">JSON</option>
                <option value="hex">Hex</option>
              </select>
            )}
          </Field>
          <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
            {paused ? 'Resume' : 'Pause'}
          </button>
          <button type="button" onClick={() => setEvents([])}>
            Clear
          </button>
        </div>
      </div>
      <p class="muted" role="status">
        {status} on <code>{props.topic}</code>; the newest {KEEP} are kept here.
      </p>
      <ErrorBox error={error} />
      {events.length === 0 && !error && <p>Nothing received since this page opened.</p>}
      <ul class="events" id="events" aria-live="off">
        {events.map((e) => {
          const a = e.message.attributes ?? {};
          return (
            <li key={e.message.messageId}>
              <div class="row">
                <Time value={e.message.publishTime} />
                {a.deviceId && (
                  <Link href={href(props.registry + '/devices/' + a.deviceId)}>{a.deviceId}</Link>
                )}
                {Object.entries(a)
                  .filter(([k]) => k !== 'deviceId')
                  .map(([k, v]) => (
                    <span class="badge" key={k}>
                      {k}={v}
                    </span>
                  ))}
              </div>
              <pre>{decode(b64decode(e.message.data), as)}</pre>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
