// The web app's REST client: JSON requests to the server's `/api`, with errors as ApiError.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * A function making one JSON request: `api(method, path, body, { signOutOn401, positioned })`.
 * It throws ApiError on a non-2xx answer; on a 401 it first calls `onUnauthorized` (unless
 * `signOutOn401` is false). With `positioned` it returns `{ json, position }`: `position` is
 * the read's `Herald-Position` (the event log position its data is consistent with), or null.
 */
export function createApi({ onUnauthorized }) {
  return async function api(method, path, body, { signOutOn401 = true, positioned = false } = {}) {
    const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
    }
    if (res.status === 204) return positioned ? { json: null, position: null } : null;
    let json = null;
    try {
      json = await res.json();
    } catch {
      // Not JSON.
    }
    if (!res.ok) {
      const error = new ApiError(res.status, json?.error ?? 'error', json?.message ?? `HTTP ${res.status}`);
      if (res.status === 401 && signOutOn401) onUnauthorized();
      throw error;
    }
    return positioned ? { json, position: positionOf(res.headers.get('Herald-Position')) } : json;
  };
}

/** A `Herald-Position` header's value as a string of digits, or null. */
function positionOf(value) {
  return typeof value === 'string' && /^[0-9]{1,20}$/.test(value) ? value : null;
}

/** Every item of a paginated collection, through `api`. */
export async function listAll(api, path) {
  const items = [];
  let after = null;
  for (let page = 0; page < 100; page++) {
    const query = `?limit=200${after ? `&after=${encodeURIComponent(after)}` : ''}`;
    const res = await api('GET', path + query);
    items.push(...(res.items ?? []));
    if (!res.nextCursor) break;
    after = res.nextCursor;
  }
  return items;
}

/** The path of a workspace. */
export const wsPath = (wsId) => `/api/workspaces/${encodeURIComponent(wsId)}`;
