// A small history router: the console's URLs are /console/ + the API's
// resource names, so a page's address names what it shows.
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/console/';

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  dispatchEvent(new Event('console:navigate'));
  window.scrollTo(0, 0);
}

export function useLocation(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    addEventListener('popstate', on);
    addEventListener('console:navigate', on);
    return () => {
      removeEventListener('popstate', on);
      removeEventListener('console:navigate', on);
    };
  }, []);
  return path;
}

/** onLinkClick makes an <a href> navigate in the app (new tabs still work). */
export function onLinkClick(e: MouseEvent): void {
  const a = e.currentTarget as HTMLAnchorElement;
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.origin !== location.origin || !a.pathname.startsWith(BASE)) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}

export type Route =
  | { page: 'signin' }
  | { page: 'registries'; project: string; location: string }
  | { page: 'newRegistry'; project: string; location: string }
  | { page: 'editRegistry'; registry: string }
  | { page: 'devices'; registry: string }
  | { page: 'newDevice'; registry: string }
  | { page: 'device'; device: string; section: string }
  | { page: 'live'; registry: string }
  | { page: 'hub' }
  | { page: 'notFound'; path: string };

/**
 * decodeSegment reads one segment of a page's path, or null when it cannot
 * name a resource: malformed escapes (an id may hold '%'), or a segment that
 * decodes to '/', '.' or '..' and would make the API call go elsewhere.
 */
function decodeSegment(s: string): string | null {
  let d: string;
  try {
    d = decodeURIComponent(s);
  } catch {
    return null;
  }
  if (d.includes('/') || d === '.' || d === '..') return null;
  return d;
}

/** encodePath escapes each segment of a resource name (ids may hold '%' or '+'). */
export function encodePath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

export function parseRoute(path: string): Route {
  let rest = path.startsWith(BASE) ? path.slice(BASE.length) : '';
  rest = rest.replace(/\/+$/, '');
  const decoded = rest ? rest.split('/').map(decodeSegment) : [];
  if (decoded.some((s) => s === null)) return { page: 'notFound', path };
  const seg = decoded as string[];
  if (seg.length === 0) return { page: 'signin' };
  if (seg[0] === 'pool' && seg.length === 1) return { page: 'hub' };
  if (seg[0] === 'projects' && seg[2] === 'locations' && seg.length >= 5 && seg[4] === 'registries') {
    const [, project, , location] = seg;
    if (seg.length === 5) return { page: 'registries', project, location };
    if (seg.length === 6 && seg[5] === '-new') return { page: 'newRegistry', project, location };
    const registry = seg.slice(0, 6).join('/');
    if (seg.length === 6) return { page: 'devices', registry };
    if (seg.length === 7 && seg[6] === 'edit') return { page: 'editRegistry', registry };
    if (seg.length === 7 && seg[6] === 'live') return { page: 'live', registry };
    if (seg.length === 8 && seg[6] === 'devices' && seg[7] === '-new') return { page: 'newDevice', registry };
    if (seg.length >= 8 && seg.length <= 9 && seg[6] === 'devices') {
      return { page: 'device', device: seg.slice(0, 8).join('/'), section: seg[8] ?? '' };
    }
  }
  return { page: 'notFound', path };
}

/** href is the console's page of a resource name (and a section of it), escaped. */
export const href = (name: string, suffix = '') => BASE + encodePath(name) + (suffix ? '/' + encodePath(suffix) : '');
