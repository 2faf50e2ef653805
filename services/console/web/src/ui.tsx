// Shared pieces of the pages: links, times, errors, forms, paging.
import type { ComponentChildren, JSX } from 'preact';
import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';
import { onLinkClick } from './router';

/** Session is who is signed in and what the token may do. */
export interface Session {
  project: string;
  location: string;
  perms: Set<string>;
  signOut: () => void;
}
export const SessionContext = createContext<Session>({ project: '', location: '', perms: new Set(), signOut: () => {} });
export const useSession = () => useContext(SessionContext);
export const useCan = () => {
  const s = useSession();
  return (p: string) => s.perms.has(p);
};

export function Link(props: { href: string; children: ComponentChildren; class?: string; 'aria-current'?: 'page' | undefined }) {
  return (
    <a href={props.href} onClick={onLinkClick} class={props.class} aria-current={props['aria-current']}>
      {props.children}
    </a>
  );
}

/** Time shows a timestamp in the user's time zone, with the UTC value on hover. */
export function Time(props: { value?: string }) {
  if (!props.value) return <span class="muted">never</span>;
  const d = new Date(props.value);
  if (isNaN(d.getTime()) || d.getTime() <= 0) return <span class="muted">never</span>;
  const local = d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
  return (
    <time dateTime={d.toISOString()} title={d.toISOString().replace('T', ' ').replace('Z', ' UTC')}>
      {local}
    </time>
  );
}

/** ErrorBox shows an API error where the user acted; role=alert reads it out. */
export function ErrorBox(props: { error: unknown; onDismiss?: () => void }) {
  if (!props.error) return null;
  const e = props.error;
  const msg = e instanceof ApiError ? e.message : e instanceof Error ? e.message : String(e);
  const code = e instanceof ApiError ? e.code : '';
  return (
    <div class="error" role="alert">
      <strong>{code ? `Error (${code}): ` : 'Error: '}</strong>
      <span class="error-message">{msg}</span>
      {props.onDismiss && (
        <button type="button" class="link" onClick={props.onDismiss}>
          Dismiss
        </button>
      )}
    </div>
  );
}

export function Notice(props: { children: ComponentChildren }) {
  return (
    <div class="notice" role="status">
      {props.children}
    </div>
  );
}

/** useAction runs an API call on a user's action, keeping its error and busy state. */
export function useAction<A extends unknown[]>(fn: (...a: A) => Promise<unknown>) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string>('');
  const run = useCallback(
    async (...a: A) => {
      setBusy(true);
      setError(null);
      setDone('');
      try {
        await fn(...a);
        return true;
      } catch (e) {
        setError(e);
        return false;
      } finally {
        setBusy(false);
      }
    },
    [fn],
  );
  return { run, error, busy, setError, done, setDone };
}

/**
 * useLoad loads data when deps change; reload() loads again, and refresh()
 * reads it again in the background (a poll): its answer is dropped once
 * deps change, so a page never shows the data of the page before, and its
 * error is shown like the first load's.
 */
export function useLoad<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const current = useRef<AbortController | null>(null);
  const latest = useRef(fn);
  latest.current = fn;
  const refresh = () => {
    const ctl = current.current;
    if (!ctl || ctl.signal.aborted) return;
    latest.current(ctl.signal)
      .then((d) => {
        if (ctl.signal.aborted) return;
        setData(d);
        setError(null);
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setError(e);
      });
  };
  useEffect(() => {
    const ctl = new AbortController();
    current.current = ctl;
    setLoading(true);
    setError(null);
    fn(ctl.signal)
      .then((d) => {
        if (!ctl.signal.aborted) setData(d);
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setError(e);
      })
      .finally(() => {
        if (!ctl.signal.aborted) setLoading(false);
      });
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  return { data, error, loading, reload: () => setTick((t) => t + 1), refresh, setData };
}

/** usePoll calls fn every ms while the page is shown. */
export function usePoll(fn: () => void, ms: number) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    const id = setInterval(() => {
      if (document.visibilityState === 'visible') saved.current();
    }, ms);
    return () => clearInterval(id);
  }, [ms]);
}

let fieldSeq = 0;
export function useId(prefix: string) {
  const ref = useRef('');
  if (!ref.current) ref.current = `${prefix}-${++fieldSeq}`;
  return ref.current;
}

export function Field(props: { label: string; hint?: string; children: (id: string, describedBy?: string) => JSX.Element }) {
  const id = useId('f');
  const hintId = props.hint ? id + '-hint' : undefined;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children(id, hintId)}
      {props.hint && (
        <small id={hintId} class="hint">
          {props.hint}
        </small>
      )}
    </div>
  );
}

/** Pager pages with page tokens: it keeps the tokens of the pages seen. */
export function usePager() {
  const [tokens, setTokens] = useState<string[]>(['']);
  const [index, setIndex] = useState(0);
  return {
    token: tokens[index],
    page: index + 1,
    reset: () => {
      setTokens(['']);
      setIndex(0);
    },
    next: (nextToken: string) => {
      setTokens((t) => [...t.slice(0, index + 1), nextToken]);
      setIndex((i) => i + 1);
    },
    prev: () => setIndex((i) => Math.max(0, i - 1)),
  };
}

export function PagerNav(props: { page: number; hasNext: boolean; onPrev: () => void; onNext: () => void; label: string }) {
  return (
    <nav class="pager" aria-label={props.label}>
      <button type="button" onClick={props.onPrev} disabled={props.page <= 1}>
        ← Previous
      </button>
      <span>Page {props.page}</span>
      <button type="button" onClick={props.onNext} disabled={!props.hasNext}>
        Next →
      </button>
    </nav>
  );
}

export function Confirm(props: { label: string; question: string; onConfirm: () => void; disabled?: boolean; class?: string }) {
  const [asking, setAsking] = useState(false);
  const yes = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) yes.current?.focus();
  }, [asking]);
  if (!asking)
    return (
      <button type="button" class={props.class ?? 'danger'} disabled={props.disabled} onClick={() => setAsking(true)}>
        {props.label}
      </button>
    );
  return (
    <span class="confirm" role="group" aria-label={props.question}>
      <span>{props.question}</span>
      <button
        type="button"
        ref={yes}
        class="danger"
        onClick={() => {
          setAsking(false);
          props.onConfirm();
        }}
      >
        Yes, {props.label.toLowerCase()}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

export const lastPart = (name: string) => name.slice(name.lastIndexOf('/') + 1);
export const registryOf = (device: string) => device.split('/').slice(0, 6).join('/');
