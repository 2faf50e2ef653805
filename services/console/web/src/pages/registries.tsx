// Registries: the list, and the create/edit form.
import { useState } from 'preact/hooks';
import { call, EventNotificationConfig, Registry, RegistryCredential, registryName, v1 } from '../api';
import { href, navigate } from '../router';
import { Confirm, ErrorBox, Field, lastPart, Link, PagerNav, useAction, useCan, useLoad, usePager, useSession } from '../ui';

const PAGE_SIZE = 20;

export function Registries() {
  const { project, location } = useSession();
  const can = useCan();
  const parent = `projects/${project}/locations/${location}`;
  const pager = usePager();
  const list = useLoad(
    (signal) =>
      call<{ deviceRegistries?: Registry[]; nextPageToken?: string }>('GET', v1(parent) + '/registries', undefined, { pageSize: PAGE_SIZE, pageToken: pager.token }, signal),
    [parent, pager.token],
  );
  const del = useAction(async (name: string) => {
    await call('DELETE', v1(name));
    list.reload();
  });
  const regs = list.data?.deviceRegistries ?? [];
  return (
    <>
      <div class="spread">
        <h1>Registries</h1>
        {can('cloudiot.registries.create') && (
          <Link class="button primary" href={href(parent + '/registries/-new')}>
            Create registry
          </Link>
        )}
      </div>
      <p class="muted">
        In <code>{parent}</code>.
      </p>
      <ErrorBox error={list.error} />
      <ErrorBox error={del.error} onDismiss={() => del.setError(null)} />
      <div class="table-wrap">
        <table>
          <caption class="skip">Registries</caption>
          <thead>
            <tr>
              <th scope="col">Registry</th>
              <th scope="col">Event topics</th>
              <th scope="col">State topic</th>
              <th scope="col">MQTT</th>
              <th scope="col">HTTP</th>
              <th scope="col">CA certificates</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {regs.map((r) => (
              <tr key={r.name}>
                <td>
                  <Link href={href(r.name!)}>{r.id}</Link>
                </td>
                <td>
                  {(r.eventNotificationConfigs ?? []).map((c, i) => (
                    <div key={i} class="mono">
                      {c.subfolderMatches ? c.subfolderMatches + ' → ' : ''}
                      {c.pubsubTopicName}
                    </div>
                  ))}
                </td>
                <td class="mono">{r.stateNotificationConfig?.pubsubTopicName}</td>
                <td>{onOff(r.mqttConfig?.mqttEnabledState, 'MQTT_ENABLED')}</td>
                <td>{onOff(r.httpConfig?.httpEnabledState, 'HTTP_ENABLED')}</td>
                <td>{(r.credentials ?? []).length}</td>
                <td class="row">
                  <Link href={href(r.name!, 'live')}>Live</Link>
                  {can('cloudiot.registries.update') && <Link href={href(r.name!, 'edit')}>Edit</Link>}
                  {can('cloudiot.registries.delete') && (
                    <Confirm label="Delete" question={`Delete registry ${r.id}?`} onConfirm={() => del.run(r.name!)} disabled={del.busy} />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {!list.loading && regs.length === 0 && !list.error && <p>No registries here yet.</p>}
      {list.loading && <p aria-busy="true">Loading…</p>}
      <PagerNav label="Registry pages" page={pager.page} hasNext={!!list.data?.nextPageToken} onPrev={pager.prev} onNext={() => pager.next(list.data!.nextPageToken!)} />
    </>
  );
}

function onOff(state: string | undefined, on: string) {
  // Cloud IoT's default is enabled.
  const enabled = !state || state === on;
  return <span class={'badge ' + (enabled ? 'ok' : '')}>{enabled ? 'on' : 'off'}</span>;
}

interface TopicRow {
  subfolder: string;
  topic: string;
}

/** RegistryForm creates a registry (no name) or edits one. */
export function RegistryForm(props: { name?: string }) {
  const { project, location } = useSession();
  const editing = !!props.name;
  const loaded = useLoad((signal) => (props.name ? call<Registry>('GET', v1(props.name), undefined, undefined, signal) : Promise.resolve<Registry>({})), [props.name]);
  if (loaded.loading) return <p aria-busy="true">Loading…</p>;
  if (loaded.error) return <ErrorBox error={loaded.error} />;
  return <RegistryEditor key={props.name ?? 'new'} initial={loaded.data!} editing={editing} parent={`projects/${project}/locations/${location}`} />;
}

function RegistryEditor(props: { initial: Registry; editing: boolean; parent: string }) {
  const r = props.initial;
  const [id, setId] = useState(r.id ?? '');
  const [topics, setTopics] = useState<TopicRow[]>(() => {
    const rows = (r.eventNotificationConfigs ?? []).map((c) => ({ subfolder: c.subfolderMatches ?? '', topic: c.pubsubTopicName ?? '' }));
    return rows.length ? rows : [{ subfolder: '', topic: '' }];
  });
  const [stateTopic, setStateTopic] = useState(r.stateNotificationConfig?.pubsubTopicName ?? '');
  const [mqtt, setMqtt] = useState(!r.mqttConfig?.mqttEnabledState || r.mqttConfig.mqttEnabledState === 'MQTT_ENABLED');
  const [http, setHttp] = useState(!r.httpConfig?.httpEnabledState || r.httpConfig.httpEnabledState === 'HTTP_ENABLED');
  const [certs, setCerts] = useState<RegistryCredential[]>(r.credentials ?? []);
  const [newCert, setNewCert] = useState('');
  const save = useAction(async () => {
    const events: EventNotificationConfig[] = topics
      .filter((t) => t.topic.trim())
      .map((t) => (t.subfolder.trim() ? { subfolderMatches: t.subfolder.trim(), pubsubTopicName: t.topic.trim() } : { pubsubTopicName: t.topic.trim() }));
    const credentials = [...certs];
    if (newCert.trim()) credentials.push({ publicKeyCertificate: { format: 'X509_CERTIFICATE_PEM', certificate: newCert.trim() } });
    const body: Registry = {
      eventNotificationConfigs: events,
      stateNotificationConfig: stateTopic.trim() ? { pubsubTopicName: stateTopic.trim() } : {},
      mqttConfig: { mqttEnabledState: mqtt ? 'MQTT_ENABLED' : 'MQTT_DISABLED' },
      httpConfig: { httpEnabledState: http ? 'HTTP_ENABLED' : 'HTTP_DISABLED' },
      credentials: credentials.map((c) => ({ publicKeyCertificate: { format: 'X509_CERTIFICATE_PEM', certificate: c.publicKeyCertificate!.certificate } })),
    };
    let saved: Registry;
    if (props.editing) {
      saved = await call<Registry>('PATCH', v1(r.name!), body, {
        updateMask: 'eventNotificationConfigs,stateNotificationConfig,mqttConfig,httpConfig,credentials',
      });
    } else {
      saved = await call<Registry>('POST', v1(props.parent) + '/registries', { id: id.trim(), ...body });
    }
    navigate(href(saved.name ?? registryName(props.parent.split('/')[1], props.parent.split('/')[3], id.trim())));
  });
  const setTopic = (i: number, f: Partial<TopicRow>) => setTopics(topics.map((t, j) => (i === j ? { ...t, ...f } : t)));
  return (
    <>
      <p class="crumbs">
        <Link href={href(props.parent + '/registries')}>Registries</Link>
        {props.editing && (
          <>
            / <Link href={href(r.name!)}>{r.id}</Link>
          </>
        )}
      </p>
      <h1>{props.editing ? `Edit registry ${r.id}` : 'Create a registry'}</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          save.run();
        }}
      >
        {!props.editing && (
          <Field label="Registry ID" hint="Starts with a letter; letters, digits and - . _ ~ + % (3 to 255 characters).">
            {(fid, d) => <input id={fid} name="registryId" type="text" required aria-describedby={d} value={id} onInput={(e) => setId(e.currentTarget.value)} />}
          </Field>
        )}
        <fieldset>
          <legend>Event topics (telemetry)</legend>
          <p class="hint">Pub/Sub topics as projects/{'{project}'}/topics/{'{topic}'}. A subfolder sends the events of that subfolder to its own topic; the row without a subfolder is the default.</p>
          {topics.map((t, i) => (
            <div class="row" key={i}>
              <Field label={`Subfolder ${i + 1}`}>
                {(fid) => <input id={fid} name={`subfolder-${i}`} type="text" value={t.subfolder} placeholder="(default)" onInput={(e) => setTopic(i, { subfolder: e.currentTarget.value })} />}
              </Field>
              <Field label={`Event topic ${i + 1}`}>
                {(fid) => <input id={fid} name={`eventTopic-${i}`} type="text" value={t.topic} onInput={(e) => setTopic(i, { topic: e.currentTarget.value })} />}
              </Field>
              {topics.length > 1 && (
                <button type="button" onClick={() => setTopics(topics.filter((_, j) => j !== i))} aria-label={`Remove event topic ${i + 1}`}>
                  Remove
                </button>
              )}
            </div>
          ))}
          <button type="button" onClick={() => setTopics([...topics, { subfolder: '', topic: '' }])}>
            Add an event topic
          </button>
        </fieldset>
        <Field label="State topic">
          {(fid) => <input id={fid} name="stateTopic" type="text" value={stateTopic} onInput={(e) => setStateTopic(e.currentTarget.value)} />}
        </Field>
        <fieldset>
          <legend>Protocols</legend>
          <label class="check">
            <input type="checkbox" name="mqtt" checked={mqtt} onChange={(e) => setMqtt(e.currentTarget.checked)} /> MQTT enabled
          </label>
          <label class="check">
            <input type="checkbox" name="http" checked={http} onChange={(e) => setHttp(e.currentTarget.checked)} /> HTTP enabled
          </label>
        </fieldset>
        <fieldset>
          <legend>CA certificates</legend>
          <p class="hint">Devices' X.509 certificates must be signed by one of these (at most 10).</p>
          {certs.map((c, i) => (
            <div key={i} class="row">
              <span class="mono">
                {c.publicKeyCertificate?.x509Details?.subject || 'certificate ' + (i + 1)}
                {c.publicKeyCertificate?.x509Details?.expiryTime ? ', expires ' + c.publicKeyCertificate.x509Details.expiryTime : ''}
              </span>
              <button type="button" onClick={() => setCerts(certs.filter((_, j) => j !== i))}>
                Remove certificate {i + 1}
              </button>
            </div>
          ))}
          <Field label="Add a CA certificate (PEM)">
            {(fid) => <textarea id={fid} name="caCert" value={newCert} placeholder="-----BEGIN CERTIFICATE-----" onInput={(e) => setNewCert(e.currentTarget.value)} />}
          </Field>
        </fieldset>
        <ErrorBox error={save.error} />
        <div class="row">
          <button type="submit" class="primary" disabled={save.busy}>
            {props.editing ? 'Save' : 'Create'}
          </button>
          <Link href={props.editing ? href(r.name!) : href(props.parent + '/registries')}>Cancel</Link>
        </div>
      </form>
      {props.editing && <p class="muted">Registry {lastPart(r.name!)}.</p>}
    </>
  );
}
