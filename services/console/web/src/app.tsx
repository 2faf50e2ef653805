// The console's shell: sign-in, the session, the header and the pages.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, getToken, setToken, testPermissions } from './api';
import { BASE, href, navigate, parseRoute, useLocation } from './router';
import { ErrorBox, Field, Link, Session, SessionContext } from './ui';
import { Registries, RegistryForm } from './pages/registries';
import { Devices, NewDevice } from './pages/devices';
import { DevicePage } from './pages/device';
import { Live } from './pages/live';
import { HubPool } from './pages/hub';

const PLACE_KEY = 'passerelle.place';
const THEME_KEY = 'passerelle.theme';

function savedPlace(): { project: string; location: string } {
  try {
    const p = JSON.parse(sessionStorage.getItem(PLACE_KEY) || '{}');
    if (p.project && p.location) return p;
  } catch {
    /* none */
  }
  return { project: 'my-project', location: 'us-central1' };
}

function useTheme(): [string, () => void] {
  const systemDark = () => matchMedia('(prefers-color-scheme: dark)').matches;
  const [theme, setTheme] = useState<string>(() => localStorage.getItem(THEME_KEY) || (systemDark() ? 'dark' : 'light'));
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  return [
    theme,
    () => {
      const next = theme === 'dark' ? 'light' : 'dark';
      localStorage.setItem(THEME_KEY, next);
      setTheme(next);
    },
  ];
}

export function App() {
  const path = useLocation();
  const route = parseRoute(path);
  const [theme, toggleTheme] = useTheme();
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(!!getToken());
  const [restoreError, setRestoreError] = useState<unknown>(null);

  // The place (project, location) follows the page shown.
  const routeProject = path.startsWith(BASE + 'projects/') ? path.split('/')[3] : '';
  const routeLocation = path.startsWith(BASE + 'projects/') ? path.split('/')[5] : '';

  const signIn = async (token: string, project: string, location: string) => {
    setToken(token);
    try {
      const perms = await testPermissions(project, location);
      sessionStorage.setItem(PLACE_KEY, JSON.stringify({ project, location }));
      setSession({
        project,
        location,
        perms,
        signOut: () => {
          setToken(null);
          setSession(null);
          navigate(BASE);
        },
      });
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) setToken(null);
      throw e;
    }
  };

  // A reload keeps the session of this tab (the token is in sessionStorage).
  useEffect(() => {
    const t = getToken();
    if (!t) return;
    const p = savedPlace();
    signIn(t, routeProject || p.project, routeLocation || p.location)
      .catch((e) => setRestoreError(e))
      .finally(() => setChecking(false));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    if (session && routeProject && routeLocation && (routeProject !== session.project || routeLocation !== session.location)) {
      setSession({ ...session, project: routeProject, location: routeLocation });
      sessionStorage.setItem(PLACE_KEY, JSON.stringify({ project: routeProject, location: routeLocation }));
    }
  }, [routeProject, routeLocation, session]);

  useEffect(() => {
    if (session && route.page === 'signin') {
      navigate(href(`projects/${session.project}/locations/${session.location}/registries`), true);
    }
  }, [session, route.page]);

  const themeButton = (
    <button type="button" onClick={toggleTheme} aria-pressed={theme === 'dark'} title="Switch between light and dark">
      Dark theme: {theme === 'dark' ? 'on' : 'off'}
    </button>
  );

  if (checking) return <main aria-busy="true">Signing in…</main>;
  if (!session) {
    return (
      <>
        <header class="top">
          <span class="brand">Passerelle console</span>
          {themeButton}
        </header>
        <main id="main">
          <SignIn onSignIn={signIn} restoreError={restoreError} />
        </main>
      </>
    );
  }
  const registriesHref = href(`projects/${session.project}/locations/${session.location}/registries`);
  const readOnly = !session.perms.has('cloudiot.devices.update') && !session.perms.has('cloudiot.registries.create');
  return (
    <SessionContext.Provider value={session}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Passerelle console</span>
        <nav aria-label="Main">
          <ul>
            <li>
              <Link href={registriesHref} aria-current={route.page === 'registries' ? 'page' : undefined}>
                Registries
              </Link>
            </li>
            <li>
              <Link href={href('pool')} aria-current={route.page === 'hub' ? 'page' : undefined}>
                Hub pool
              </Link>
            </li>
          </ul>
        </nav>
        <span class="who">
          {session.project} · {session.location}
          {readOnly && <span class="badge warn"> read-only token</span>}
        </span>
        {themeButton}
        <button type="button" onClick={session.signOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page()}
      </main>
    </SessionContext.Provider>
  );

  function page() {
    switch (route.page) {
      case 'signin':
      case 'registries':
        return <Registries />;
      case 'newRegistry':
        return <RegistryForm />;
      case 'editRegistry':
        return <RegistryForm name={route.registry} />;
      case 'devices':
        return <Devices registry={route.registry} />;
      case 'newDevice':
        return <NewDevice registry={route.registry} />;
      case 'device':
        return <DevicePage name={route.device} section={route.section} />;
      case 'live':
        return <Live registry={route.registry} />;
      case 'hub':
        return <HubPool />;
      default:
        return (
          <>
            <h1>Page not found</h1>
            <p>
              Nothing at <code>{route.page === 'notFound' ? route.path : path}</code>. <Link href={registriesHref}>Go to the registries</Link>.
            </p>
          </>
        );
    }
  }
}

function SignIn(props: { onSignIn: (t: string, p: string, l: string) => Promise<void>; restoreError: unknown }) {
  const place = savedPlace();
  const [token, setTok] = useState('');
  const [project, setProject] = useState(place.project);
  const [location, setLocation] = useState(place.location);
  const [error, setError] = useState<unknown>(props.restoreError);
  const [busy, setBusy] = useState(false);
  return (
    <section class="signin" aria-labelledby="signin-h">
      <h1 id="signin-h">Sign in</h1>
      <p>
        Paste an admin token: the contents of <code>admin.token</code> in the data folder, or a token of the tokens file. A viewer
        token gives a read-only console. The token stays in this browser tab only.
      </p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            await props.onSignIn(token.trim(), project.trim(), location.trim());
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field label="Admin token">
          {(id) => (
            <input id={id} name="token" type="password" autoComplete="off" required value={token} onInput={(e) => setTok(e.currentTarget.value)} />
          )}
        </Field>
        <Field label="Project" hint="The project of your registries, as in projects/{project}/locations/{location}.">
          {(id, d) => <input id={id} name="project" type="text" required aria-describedby={d} value={project} onInput={(e) => setProject(e.currentTarget.value)} />}
        </Field>
        <Field label="Location">
          {(id) => <input id={id} name="location" type="text" required value={location} onInput={(e) => setLocation(e.currentTarget.value)} />}
        </Field>
        <ErrorBox error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </section>
  );
}
