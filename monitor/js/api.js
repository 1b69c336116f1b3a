// The monitor's calls to the supervisor: the admin token (kept in sessionStorage, sent as a
// Bearer header), JSON requests with errors in plain words, and the live feed read with fetch
// (an EventSource cannot send the token in a header).

const KEY = 'ownstream-admin-token';

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY) ?? '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

function headers(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

async function errorOf(res) {
  let text = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body.error) text = body.error;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(text, res.status);
}

/** JSON request to the supervisor; throws ApiError (status 0: unreachable). */
export async function call(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError('cannot reach the supervisor', 0);
  }
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** The live streams (public). */
export async function streams() {
  const res = await fetch('/api/streams', { cache: 'no-store' });
  if (!res.ok) throw new ApiError(`the supervisor answered ${res.status}`, res.status);
  return res.json();
}

/**
 * Reads the live feed of `stream` until `signal` aborts; calls `onSnapshot(json)` for each
 * snapshot. Resolves when the feed ends, rejects with ApiError on a refusal.
 */
export async function feed(stream, onSnapshot, signal) {
  const res = await fetch(`/api/monitor/events?stream=${encodeURIComponent(stream)}`, { headers: headers(), signal });
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
      if (data) onSnapshot(JSON.parse(data));
    }
  }
}
