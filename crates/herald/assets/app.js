// Herald's web app: sign in, then workspaces with their todos, channels, private notes and
// members, all kept live by ONE event stream (`/api/events`, through /herald.js).
//
// State is loaded with REST once per workspace; after that every event's payload is applied
// to the local state directly (upsert by id on created/updated, remove on deleted). State is
// refetched only when the server says our position in the log is lost (`reset`) and after
// membership changes (the server ends the stream so the next one covers the new set of
// workspaces).
//
// All user text goes into the DOM through textContent / text nodes, never innerHTML.

import { connect } from '/herald.js';

// ---------------------------------------------------------------------------------------------
// Small DOM helpers
// ---------------------------------------------------------------------------------------------

/** The element with this data-testid (under `root`). */
const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
const $ = (selector, root = document) => root.querySelector(selector);

/**
 * Creates an element. `props`: `class`, `testid`, `text`, `dataset`, `on<event>` listeners,
 * DOM properties given as non-strings (`checked: true`), attributes otherwise. Children are
 * nodes or strings (strings become text nodes).
 */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'testid') el.dataset.testid = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (typeof value !== 'string' && key in el) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * Makes `list`'s keyed children match `items` in order, reusing the element of an item that
 * is still there (so an inline editor or focus survives a re-render).
 */
function reconcile(list, items, keyOf, create, update) {
  const existing = new Map();
  for (const el of [...list.children]) {
    if (el.dataset.key) existing.set(el.dataset.key, el);
    else el.remove();
  }
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    const expected = previous ? previous.nextElementSibling : list.firstElementChild;
    if (el !== expected) list.insertBefore(el, expected);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

const byCreated = (a, b) =>
  Date.parse(a.createdAt) - Date.parse(b.createdAt) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

const relativeTime = (() => {
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  return (iso) => {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '';
    const s = Math.round((t - Date.now()) / 1000);
    if (Math.abs(s) < 45) return 'just now';
    const m = Math.round(s / 60);
    if (Math.abs(m) < 60) return rtf.format(m, 'minute');
    const hrs = Math.round(m / 60);
    if (Math.abs(hrs) < 24) return rtf.format(hrs, 'hour');
    return new Date(t).toLocaleDateString();
  };
})();

const initials = (name) =>
  (name || '?')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((part) => part[0].toUpperCase())
    .join('') || '?';

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One JSON request. Throws ApiError on a non-2xx answer; a 401 also signs the UI out. */
async function api(method, path, body, { signOutOn401 = true } = {}) {
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
  if (res.status === 204) return null;
  let json = null;
  try {
    json = await res.json();
  } catch {
    // Not JSON.
  }
  if (!res.ok) {
    const error = new ApiError(res.status, json?.error ?? 'error', json?.message ?? `HTTP ${res.status}`);
    if (res.status === 401 && signOutOn401 && state.me) signedOut('Your session has ended. Please sign in again.');
    throw error;
  }
  return json;
}

/** Every item of a paginated collection. */
async function listAll(path) {
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

const wsPath = (wsId) => `/api/workspaces/${encodeURIComponent(wsId)}`;

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

const TABS = ['todos', 'channels', 'notes', 'members'];
const COLLECTIONS = ['todos', 'channels', 'notes'];

const state = {
  me: null,
  /** id -> Workspace (with my `role`) */
  workspaces: new Map(),
  wsId: null,
  tab: 'todos',
  todos: new Map(),
  channels: new Map(),
  notes: new Map(),
  /** userId -> Member */
  members: new Map(),
  channelId: null,
  /** every user, for the member picker (loaded on demand) */
  users: null,
  /** true while the current workspace's data loads; events for it are queued in `pending` */
  loading: false,
  pending: [],
  /** refetch the workspace list once the stream (re)connects: membership changed */
  refetchOnConnect: false,
  /** reload everything once the stream connects: state was loaded before it was live */
  reloadOnConnect: false,
  connectedOnce: false,
};

let stream = null;
let loadSeq = 0;

const currentWs = () => state.workspaces.get(state.wsId) ?? null;
const canManage = (ws = currentWs()) => !!ws && (state.me?.role === 'admin' || ws.role === 'owner');
const storageKey = (what) => `herald:${state.me?.id}:${what}`;
const remember = (what, value) => {
  try {
    localStorage.setItem(storageKey(what), value);
  } catch {
    // Storage may be unavailable (private mode); not important.
  }
};
const recall = (what) => {
  try {
    return localStorage.getItem(storageKey(what));
  } catch {
    return null;
  }
};

/** Inserts or replaces by id, unless what we hold is newer (a queued event older than a GET). */
function upsert(map, item) {
  const held = map.get(item.id);
  if (held && item.updatedAt && held.updatedAt && Date.parse(item.updatedAt) < Date.parse(held.updatedAt)) {
    return false;
  }
  map.set(item.id, held ? { ...held, ...item } : item);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Views: sign-in and the app shell
// ---------------------------------------------------------------------------------------------

const views = {
  boot: $('#boot-view'),
  login: $('#login-view'),
  app: $('#app-view'),
};

function showView(name) {
  for (const [key, el] of Object.entries(views)) el.hidden = key !== name;
}

function showLogin(message = '') {
  showView('login');
  const error = byTestId('login-error');
  error.textContent = message;
  error.hidden = !message;
  error.classList.toggle('info', !!message);
  byTestId('login-password').value = '';
  byTestId('login-email').focus();
}

async function onLoginSubmit(event) {
  event.preventDefault();
  const email = byTestId('login-email').value.trim();
  const password = byTestId('login-password').value;
  const error = byTestId('login-error');
  const submit = byTestId('login-submit');
  error.hidden = true;
  error.classList.remove('info');
  if (!email || !password) {
    error.textContent = 'Enter your email and password.';
    error.hidden = false;
    return;
  }
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  try {
    await api('POST', '/api/login', { email, password }, { signOutOn401: false });
    state.me = await api('GET', '/api/me', undefined, { signOutOn401: false });
    byTestId('login-password').value = '';
    await enterApp();
  } catch (err) {
    error.textContent =
      err.status === 401 ? 'Wrong email or password.' : err.message || 'Could not sign in. Try again.';
    error.hidden = false;
  } finally {
    submit.disabled = false;
    submit.textContent = 'Sign in';
  }
}

async function onLogout() {
  try {
    await api('POST', '/api/logout', undefined, { signOutOn401: false });
  } catch {
    // Signed out locally either way.
  }
  signedOut('');
}

/** Forgets everything about the session and shows the sign-in form. */
function signedOut(message) {
  stream?.close();
  stream = null;
  loadSeq++;
  Object.assign(state, {
    me: null,
    workspaces: new Map(),
    wsId: null,
    todos: new Map(),
    channels: new Map(),
    notes: new Map(),
    members: new Map(),
    channelId: null,
    users: null,
    loading: false,
    pending: [],
    refetchOnConnect: false,
    reloadOnConnect: false,
    connectedOnce: false,
  });
  hideNotice();
  $('#toasts').replaceChildren();
  showLogin(message);
}

async function enterApp() {
  showView('app');
  byTestId('user-name').textContent = state.me.name;
  $('#user-avatar').textContent = initials(state.me.name);
  $('#user-email').textContent = state.me.email;
  $('#user-role').hidden = state.me.role !== 'admin';
  const tab = recall('tab');
  state.tab = TABS.includes(tab) ? tab : 'todos';
  render();

  // Open the stream first and wait (briefly) for it to be live, so that nothing that changes
  // after our GETs can be missed. If it is slow, load anyway and reload once it connects.
  const ready = openStream();
  const timedOut = await Promise.race([ready.then(() => false), sleep(3000).then(() => true)]);
  if (timedOut) state.reloadOnConnect = true;
  await loadWorkspaces();
  selectWorkspace(pickWorkspace(recall('ws')));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------------------------

/** Opens the one stream; resolves on its first `connected`. */
function openStream() {
  let resolveReady;
  const ready = new Promise((resolve) => (resolveReady = resolve));
  stream = connect('/api/events', { onStatus: renderStatus, onChange: renderTransport });
  const s = stream;

  s.on('connected', (data) => {
    if (s !== stream) return;
    resolveReady();
    const first = !state.connectedOnce;
    state.connectedOnce = true;
    // The server tells us which workspaces this stream covers; if that is not what we show,
    // our list is stale (we were added or removed while away).
    const known = [...state.workspaces.values()].filter((ws) => ws.role).map((ws) => ws.id);
    const covered = Array.isArray(data?.workspaces) ? data.workspaces : null;
    const differs =
      covered && state.me?.role !== 'admin' && (covered.length !== known.length || known.some((id) => !covered.includes(id)));
    if (state.reloadOnConnect) {
      // We loaded before the stream was live: something may have changed in between.
      state.reloadOnConnect = false;
      state.refetchOnConnect = false;
      refreshWorkspaces({ reloadCurrent: true });
    } else if (!first && (state.refetchOnConnect || differs)) {
      state.refetchOnConnect = false;
      refreshWorkspaces();
    }
  });
  s.on('reset', () => {
    if (s !== stream) return;
    refreshWorkspaces({ reloadCurrent: true });
  });

  for (const collection of COLLECTIONS) {
    for (const action of ['created', 'updated', 'deleted']) {
      s.on(`${collection}:${action}`, (event) => s === stream && onResourceEvent(event));
    }
  }
  s.on('workspaces:created', (event) => s === stream && onWorkspaceEvent(event));
  s.on('workspaces:updated', (event) => s === stream && onWorkspaceEvent(event));
  s.on('workspaces:deleted', (event) => s === stream && onWorkspaceEvent(event));
  s.on('members:added', (event) => s === stream && onMemberAdded(event));
  s.on('members:removed', (event) => s === stream && onMemberRemoved(event));
  s.on('notification', (event) => s === stream && onNotification(event));
  s.on('announcement', (event) => s === stream && onAnnouncement(event));

  return ready;
}

/** Shows how events arrive (stream or long-poll) and whether this tab runs the shared stream. */
function renderTransport({ transport, role }) {
  const pill = byTestId('status');
  pill.dataset.transport = transport;
  pill.dataset.role = role;
}

let meCheck = null;
function renderStatus(status) {
  const pill = byTestId('status');
  // The pill says one of three words; the first connection attempt counts as "reconnecting".
  const word = status === 'connected' ? 'connected' : status === 'offline' ? 'offline' : 'reconnecting';
  pill.textContent = word;
  pill.dataset.status = status;
  pill.title =
    status === 'connected'
      ? 'Live: changes appear as they happen'
      : status === 'offline'
        ? 'Offline: changes will appear when the connection is back'
        : 'Connecting to live updates…';
  // A stream that fails may mean the session ended (signed out elsewhere): check once.
  if ((status === 'reconnecting' || status === 'offline') && state.connectedOnce && !meCheck) {
    meCheck = sleep(1000)
      .then(() => (state.me ? api('GET', '/api/me') : null))
      .catch(() => {})
      .finally(() => (meCheck = null));
  }
}

function onResourceEvent(event) {
  if (!event || event.workspaceId !== state.wsId) return;
  if (state.loading) {
    state.pending.push(event);
    return;
  }
  applyResourceEvent(event);
}

function applyResourceEvent(event, { quiet = false } = {}) {
  const { resourceType: collection, action, data: item } = event;
  const map = state[collection];
  if (!map || !item?.id) return;
  if (collection === 'notes' && item.createdBy !== state.me.id) return; // "my notes" only
  const byOther = event.user?.id && event.user.id !== state.me.id;
  if (action === 'deleted') {
    if (!map.delete(item.id)) return;
    if (collection === 'channels' && state.channelId === item.id) {
      const general = defaultChannel();
      state.channelId = general?.id ?? null;
      if (byOther && !quiet) {
        appToast(`#${item.name} was deleted by ${event.user.name}. You are now in #${general?.name ?? 'general'}.`);
      }
    }
  } else if (!upsert(map, item)) {
    return;
  }
  renderMain();
  if (byOther && !quiet && action !== 'deleted') flash(collection, item.id);
}

function onWorkspaceEvent(event) {
  const ws = event.data;
  if (!ws?.id) return;
  const held = state.workspaces.get(ws.id);
  if (event.type === 'workspaces:deleted') {
    if (!held) return;
    state.workspaces.delete(ws.id);
    if (event.user?.id !== state.me.id) showNotice(`The workspace “${ws.name}” was deleted by ${event.user?.name ?? 'someone'}.`);
    if (state.wsId === ws.id) selectWorkspace(pickWorkspace(null));
    else renderSidebar();
    return;
  }
  if (event.type === 'workspaces:created') {
    // The server ends the stream after this event; the next one includes the new workspace.
    state.refetchOnConnect = true;
  }
  const role = held?.role ?? (ws.createdBy === state.me.id ? 'owner' : null);
  if (!held && event.type === 'workspaces:updated' && state.me.role !== 'admin') return;
  state.workspaces.set(ws.id, { ...held, ...ws, role });
  renderSidebar();
  if (ws.id === state.wsId) renderMain();
}

async function onMemberAdded(event) {
  const member = event.data;
  const wsId = event.workspaceId ?? member?.workspaceId;
  if (!member || !wsId) return;
  if (member.userId === state.me.id) {
    // We joined a workspace: the stream restarts to include it; fetch it now for the list.
    state.refetchOnConnect = true;
    try {
      const ws = await api('GET', wsPath(wsId));
      const known = state.workspaces.has(wsId);
      state.workspaces.set(ws.id, ws);
      renderSidebar();
      if (!known) appToast(`${event.user?.name ?? 'Someone'} added you to “${ws.name}”.`);
      if (!state.wsId) selectWorkspace(ws.id);
    } catch {
      // Picked up by the refetch on reconnect.
    }
  }
  if (wsId === state.wsId) {
    if (state.loading) state.pending.push(event);
    else {
      state.members.set(member.userId, member);
      const ws = currentWs();
      if (ws && member.userId === state.me.id) ws.role = member.role;
      renderMain();
    }
  }
}

function onMemberRemoved(event) {
  const member = event.data;
  const wsId = event.workspaceId ?? member?.workspaceId;
  if (!member || !wsId) return;
  if (member.userId === state.me.id) {
    const ws = state.workspaces.get(wsId);
    const name = ws?.name ?? member.workspaceName ?? 'a workspace';
    const self = event.user?.id === state.me.id;
    state.refetchOnConnect = true;
    if (state.me.role === 'admin') {
      // Admins still see every workspace, just not as a member.
      if (ws) ws.role = null;
      if (wsId === state.wsId) state.members.delete(member.userId);
      renderSidebar();
      renderMain();
      if (!self) showNotice(`You were removed from ${name} by ${event.user?.name ?? 'an owner'}.`);
      return;
    }
    state.workspaces.delete(wsId);
    showNotice(
      self ? `You left ${name}.` : `You were removed from ${name} by ${event.user?.name ?? 'an owner'}. Its updates no longer reach you.`,
    );
    if (wsId === state.wsId) selectWorkspace(pickWorkspace(null));
    else renderSidebar();
    return;
  }
  if (wsId === state.wsId) {
    if (state.loading) state.pending.push(event);
    else {
      state.members.delete(member.userId);
      renderMain();
    }
  }
}

function messageOf(data) {
  if (data === null || data === undefined) return '';
  if (typeof data === 'string') return data;
  if (typeof data === 'object') {
    for (const key of ['message', 'text', 'body', 'title']) {
      if (typeof data[key] === 'string') return data[key];
    }
  }
  return JSON.stringify(data);
}

function onNotification(event) {
  const data = event?.data;
  const title = (data && typeof data === 'object' && typeof data.title === 'string' && data.message) ? data.title : 'Notification';
  notificationToast({ kind: 'notification', title, text: messageOf(data), from: event?.user?.name });
}

function onAnnouncement(event) {
  const ws = state.workspaces.get(event?.workspaceId);
  notificationToast({
    kind: 'announcement',
    title: ws ? `Announcement · ${ws.name}` : 'Announcement',
    text: messageOf(event?.data),
    from: event?.user?.name,
  });
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

async function loadWorkspaces() {
  const res = await api('GET', '/api/workspaces');
  state.workspaces = new Map((res.items ?? []).map((ws) => [ws.id, ws]));
  renderSidebar();
}

/** Refetches the workspace list; switches away if the current one is gone. */
async function refreshWorkspaces({ reloadCurrent = false } = {}) {
  try {
    await loadWorkspaces();
  } catch {
    return;
  }
  if (!state.workspaces.has(state.wsId)) selectWorkspace(pickWorkspace(null));
  else if (reloadCurrent) loadWorkspaceData(state.wsId);
  else renderMain();
}

/** The workspace to show: the preferred one if still there, else the first by name. */
function pickWorkspace(preferred) {
  if (preferred && state.workspaces.has(preferred)) return preferred;
  const sorted = sortedWorkspaces();
  const mine = sorted.find((ws) => ws.role);
  return (mine ?? sorted[0])?.id ?? null;
}

const sortedWorkspaces = () =>
  [...state.workspaces.values()].sort((a, b) => a.name.localeCompare(b.name) || (a.id < b.id ? -1 : 1));

function selectWorkspace(wsId) {
  const changed = wsId !== state.wsId;
  state.wsId = wsId;
  if (changed) {
    state.todos = new Map();
    state.channels = new Map();
    state.notes = new Map();
    state.members = new Map();
    state.channelId = null;
  }
  if (wsId) remember('ws', wsId);
  closeSidebar();
  render();
  if (wsId) loadWorkspaceData(wsId);
}

async function loadWorkspaceData(wsId) {
  const seq = ++loadSeq;
  state.loading = true;
  state.pending = [];
  renderMain();
  try {
    const base = wsPath(wsId);
    const [todos, channels, notes, members] = await Promise.all([
      listAll(`${base}/todos`),
      listAll(`${base}/channels`),
      listAll(`${base}/notes`),
      api('GET', `${base}/members`).then((res) => res.items ?? []),
    ]);
    if (seq !== loadSeq) return;
    state.todos = new Map(todos.map((t) => [t.id, t]));
    state.channels = new Map(channels.map((c) => [c.id, c]));
    state.notes = new Map(notes.filter((n) => n.createdBy === state.me.id).map((n) => [n.id, n]));
    state.members = new Map(members.map((m) => [m.userId, m]));
    const me = state.members.get(state.me.id);
    const ws = currentWs();
    if (ws && me) ws.role = me.role;
    if (!state.channels.has(state.channelId)) {
      const stored = recall(`channel:${wsId}`);
      state.channelId = state.channels.has(stored) ? stored : (defaultChannel()?.id ?? null);
    }
    state.loading = false;
    // Apply what arrived while we were loading (upsert keeps the newer of the two).
    const pending = state.pending;
    state.pending = [];
    for (const event of pending) {
      if (event.type === 'members:added') state.members.set(event.data.userId, event.data);
      else if (event.type === 'members:removed') state.members.delete(event.data.userId);
      else applyResourceEvent(event, { quiet: true });
    }
  } catch (err) {
    if (seq !== loadSeq) return;
    if (err.status === 404) {
      // Gone, or no longer ours.
      state.workspaces.delete(wsId);
      state.loading = false;
      selectWorkspace(pickWorkspace(null));
      return;
    }
    if (err.status !== 401) appToast(`Could not load the workspace: ${err.message}`, 'error');
  } finally {
    if (seq === loadSeq) {
      state.loading = false;
      state.pending = [];
    }
  }
  render();
}

const defaultChannel = () =>
  [...state.channels.values()].find((c) => c.isDefault) ??
  [...state.channels.values()].find((c) => c.name === 'general') ??
  [...state.channels.values()].sort(byCreated)[0] ??
  null;

async function loadUsers() {
  try {
    const res = await api('GET', '/api/users');
    state.users = res.items ?? [];
  } catch (err) {
    state.users = [];
    if (err.status !== 401) appToast(`Could not load users: ${err.message}`, 'error');
  }
  renderMembers();
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

function render() {
  renderSidebar();
  renderMain();
}

function renderSidebar() {
  const list = byTestId('workspace-list');
  const items = sortedWorkspaces();
  reconcile(
    list,
    items,
    (ws) => ws.id,
    (ws) =>
      h(
        'li',
        { testid: 'workspace-item', class: 'ws-item' },
        h(
          'button',
          { type: 'button', class: 'ws-button', onclick: () => selectWorkspace(ws.id) },
          h('span', { class: 'ws-avatar', 'aria-hidden': 'true' }),
          h('span', { class: 'ws-name' }),
          h('span', { class: 'ws-role' }),
        ),
      ),
    (el, ws) => {
      const active = ws.id === state.wsId;
      el.classList.toggle('active', active);
      el.dataset.workspaceId = ws.id;
      const button = $('.ws-button', el);
      if (active) button.setAttribute('aria-current', 'page');
      else button.removeAttribute('aria-current');
      $('.ws-avatar', el).textContent = initials(ws.name);
      $('.ws-name', el).textContent = ws.name;
      $('.ws-role', el).textContent = ws.role === 'owner' ? 'owner' : ws.role ? '' : 'admin';
    },
  );
  $('#ws-empty').hidden = items.length > 0;
}

function renderMain() {
  const ws = currentWs();
  $('#empty-state').hidden = !!ws;
  $('#workspace-view').hidden = !ws;
  if (!ws) {
    // Nothing of a workspace we left may linger in the (hidden) DOM.
    for (const id of ['todo-list', 'channel-list', 'note-list', 'member-list']) byTestId(id).replaceChildren();
    return;
  }

  byTestId('workspace-name').textContent = ws.name;
  if (!$('#ws-rename-form').hidden && $('#ws-rename-form').dataset.wsId !== ws.id) $('#ws-rename-form').hidden = true;
  byTestId('workspace-name').hidden = !$('#ws-rename-form').hidden;
  const role = ws.role ?? (state.me.role === 'admin' ? 'admin' : '');
  $('#ws-role').textContent = role;
  $('#ws-role').hidden = !role;
  $('#ws-meta').textContent = `${state.members.size || '…'} member${state.members.size === 1 ? '' : 's'}`;
  $('#ws-actions').hidden = !canManage(ws);
  $('#workspace-view').classList.toggle('is-loading', state.loading);

  for (const tab of TABS) {
    const button = byTestId(`tab-${tab}`);
    const active = tab === state.tab;
    button.setAttribute('aria-selected', String(active));
    button.tabIndex = active ? 0 : -1;
    $(`#panel-${tab}`).hidden = !active;
  }
  $('#count-todos').textContent = state.loading ? '' : String([...state.todos.values()].filter((t) => !t.done).length);
  $('#count-channels').textContent = state.loading ? '' : String(state.channels.size);
  $('#count-notes').textContent = state.loading ? '' : String(state.notes.size);
  $('#count-members').textContent = state.loading ? '' : String(state.members.size);

  renderTodos();
  renderChannels();
  renderNotes();
  renderMembers();
}

const memberName = (userId) => state.members.get(userId)?.name ?? (userId === state.me?.id ? state.me.name : 'someone');

// --- Todos ---

function renderTodos() {
  const todos = [...state.todos.values()].sort(byCreated);
  const list = byTestId('todo-list');
  reconcile(list, todos, (t) => t.id, createTodoItem, updateTodoItem);
  const open = todos.filter((t) => !t.done).length;
  $('#todo-empty').hidden = state.loading || todos.length > 0;
  $('#todo-summary').textContent = todos.length ? `${open} open · ${todos.length - open} done` : '';
}

function createTodoItem(todo) {
  const li = h('li', { testid: 'todo-item', class: 'item todo-item' });
  const toggle = h('input', {
    type: 'checkbox',
    testid: 'todo-toggle',
    class: 'check',
    'aria-label': 'Done',
    onchange: () => toggleTodo(li.dataset.key, toggle.checked),
  });
  const title = h('span', {
    testid: 'todo-title',
    class: 'item-title',
    title: 'Double-click to rename',
    ondblclick: () => editTodo(li),
  });
  li.append(
    toggle,
    h('div', { class: 'item-body' }, title, h('span', { class: 'item-meta' })),
    h(
      'div',
      { class: 'item-actions' },
      h('button', { type: 'button', class: 'ghost small', testid: 'todo-edit', text: 'Rename', onclick: () => editTodo(li) }),
      h('button', {
        type: 'button',
        class: 'ghost small danger',
        testid: 'todo-delete',
        text: 'Delete',
        'aria-label': 'Delete todo',
        onclick: () => deleteTodo(li.dataset.key),
      }),
    ),
  );
  return li;
}

function updateTodoItem(li, todo) {
  li.classList.toggle('done', !!todo.done);
  byTestId('todo-toggle', li).checked = !!todo.done;
  if (!li.dataset.editing) byTestId('todo-title', li).textContent = todo.title;
  $('.item-meta', li).textContent = `${memberName(todo.createdBy)} · ${relativeTime(todo.createdAt)}`;
  $('.item-meta', li).title = new Date(todo.updatedAt || todo.createdAt).toLocaleString();
}

async function addTodo(event) {
  event.preventDefault();
  const input = byTestId('todo-input');
  const title = input.value.trim();
  if (!title || !state.wsId) return;
  const wsId = state.wsId;
  const button = byTestId('todo-add');
  button.disabled = true;
  try {
    const todo = await api('POST', `${wsPath(wsId)}/todos`, { title });
    input.value = '';
    if (wsId === state.wsId && !state.loading) {
      upsert(state.todos, todo);
      renderMain();
    }
  } catch (err) {
    appToast(`Could not add the todo: ${err.message}`, 'error');
  } finally {
    button.disabled = false;
    input.focus();
  }
}

async function toggleTodo(id, done) {
  const todo = state.todos.get(id);
  if (!todo) return;
  const wsId = state.wsId;
  state.todos.set(id, { ...todo, done }); // optimistic
  renderMain();
  try {
    const saved = await api('PATCH', `${wsPath(wsId)}/todos/${id}`, { done });
    if (wsId === state.wsId && state.todos.has(id)) upsert(state.todos, saved);
  } catch (err) {
    if (wsId === state.wsId && state.todos.has(id)) state.todos.set(id, todo);
    appToast(`Could not update the todo: ${err.message}`, 'error');
  }
  renderMain();
}

function editTodo(li) {
  const id = li.dataset.key;
  const todo = state.todos.get(id);
  if (!todo || li.dataset.editing) return;
  const title = byTestId('todo-title', li);
  inlineEdit(title, {
    value: todo.title,
    testid: 'todo-edit-input',
    maxLength: 500,
    host: li,
    onSave: async (value) => {
      if (value === todo.title) return true;
      const wsId = state.wsId;
      try {
        const saved = await api('PATCH', `${wsPath(wsId)}/todos/${id}`, { title: value });
        if (wsId === state.wsId && state.todos.has(id)) upsert(state.todos, saved);
        return true;
      } catch (err) {
        appToast(`Could not rename the todo: ${err.message}`, 'error');
        return false;
      }
    },
    onDone: () => renderMain(),
  });
}

async function deleteTodo(id) {
  const todo = state.todos.get(id);
  if (!todo) return;
  const wsId = state.wsId;
  state.todos.delete(id); // optimistic
  renderMain();
  try {
    await api('DELETE', `${wsPath(wsId)}/todos/${id}`);
  } catch (err) {
    if (err.status !== 404 && wsId === state.wsId) {
      state.todos.set(id, todo);
      renderMain();
    }
    if (err.status !== 404) appToast(`Could not delete the todo: ${err.message}`, 'error');
  }
}

// --- Channels ---

function renderChannels() {
  const channels = [...state.channels.values()].sort(
    (a, b) => Number(b.isDefault) - Number(a.isDefault) || a.name.localeCompare(b.name),
  );
  reconcile(
    byTestId('channel-list'),
    channels,
    (c) => c.id,
    (channel) =>
      h(
        'li',
        { testid: 'channel-item', class: 'channel-item' },
        h(
          'button',
          {
            type: 'button',
            class: 'channel-button',
            onclick: () => {
              state.channelId = channel.id;
              remember(`channel:${state.wsId}`, channel.id);
              renderChannels();
            },
          },
          h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
          h('span', { class: 'channel-name' }),
        ),
      ),
    (el, channel) => {
      const selected = channel.id === state.channelId;
      el.classList.toggle('selected', selected);
      el.dataset.channelId = channel.id;
      if (selected) el.setAttribute('aria-current', 'true');
      else el.removeAttribute('aria-current');
      $('.channel-name', el).textContent = channel.name;
    },
  );
  $('#channel-empty').hidden = state.loading || channels.length > 0;

  const channel = state.channels.get(state.channelId);
  const detail = $('#channel-detail');
  detail.hidden = !channel;
  if (!channel) return;
  if (detail.dataset.channelId !== channel.id) {
    detail.dataset.channelId = channel.id;
    $('#channel-rename-form').hidden = true;
    resetConfirm(byTestId('channel-delete'));
  }
  byTestId('selected-channel').textContent = channel.name;
  byTestId('selected-channel').hidden = !$('#channel-rename-form').hidden;
  $('#channel-default').hidden = !channel.isDefault;
  $('#channel-meta').textContent = `Created by ${memberName(channel.createdBy)} · ${relativeTime(channel.createdAt)}`;
  byTestId('channel-delete').hidden = !!channel.isDefault;
}

async function addChannel(event) {
  event.preventDefault();
  const input = byTestId('channel-input');
  const name = input.value.trim().replace(/^#/, '');
  if (!name || !state.wsId) return;
  const wsId = state.wsId;
  try {
    const channel = await api('POST', `${wsPath(wsId)}/channels`, { name });
    input.value = '';
    if (wsId === state.wsId) {
      upsert(state.channels, channel);
      state.channelId = channel.id;
      remember(`channel:${wsId}`, channel.id);
      renderMain();
    }
  } catch (err) {
    appToast(`Could not create the channel: ${err.message}`, 'error');
  }
}

function startChannelRename() {
  const channel = state.channels.get(state.channelId);
  if (!channel) return;
  const form = $('#channel-rename-form');
  form.hidden = false;
  byTestId('selected-channel').hidden = true;
  const input = byTestId('channel-rename-input');
  input.value = channel.name;
  input.focus();
  input.select();
}

async function saveChannelRename(event) {
  event.preventDefault();
  const channel = state.channels.get(state.channelId);
  const name = byTestId('channel-rename-input').value.trim().replace(/^#/, '');
  if (!channel) return;
  if (!name || name === channel.name) return cancelChannelRename();
  const wsId = state.wsId;
  try {
    const saved = await api('PATCH', `${wsPath(wsId)}/channels/${channel.id}`, { name });
    if (wsId === state.wsId && state.channels.has(saved.id)) upsert(state.channels, saved);
    cancelChannelRename();
  } catch (err) {
    appToast(`Could not rename the channel: ${err.message}`, 'error');
  }
}

function cancelChannelRename() {
  $('#channel-rename-form').hidden = true;
  renderMain();
}

async function deleteChannel() {
  const channel = state.channels.get(state.channelId);
  if (!channel || channel.isDefault) return;
  const wsId = state.wsId;
  try {
    await api('DELETE', `${wsPath(wsId)}/channels/${channel.id}`);
    if (wsId === state.wsId) {
      state.channels.delete(channel.id);
      state.channelId = defaultChannel()?.id ?? null;
      renderMain();
    }
  } catch (err) {
    appToast(`Could not delete the channel: ${err.message}`, 'error');
  }
}

// --- Notes ---

function renderNotes() {
  const notes = [...state.notes.values()].sort(byCreated);
  reconcile(
    byTestId('note-list'),
    notes,
    (n) => n.id,
    (note) => {
      const li = h('li', { testid: 'note-item', class: 'note-item' });
      li.append(
        h('p', { class: 'note-content', testid: 'note-content' }),
        h(
          'div',
          { class: 'note-footer' },
          h('span', { class: 'item-meta' }),
          h(
            'div',
            { class: 'item-actions' },
            h('button', { type: 'button', class: 'ghost small', testid: 'note-edit', text: 'Edit', onclick: () => editNote(li) }),
            h('button', {
              type: 'button',
              class: 'ghost small danger',
              testid: 'note-delete',
              text: 'Delete',
              onclick: () => deleteNote(li.dataset.key),
            }),
          ),
        ),
      );
      return li;
    },
    (li, note) => {
      if (!li.dataset.editing) byTestId('note-content', li).textContent = note.content;
      const edited = note.updatedAt && note.updatedAt !== note.createdAt;
      $('.item-meta', li).textContent = edited ? `edited ${relativeTime(note.updatedAt)}` : relativeTime(note.createdAt);
    },
  );
  $('#note-empty').hidden = state.loading || notes.length > 0;
}

async function addNote(event) {
  event.preventDefault();
  const input = byTestId('note-input');
  const content = input.value.trim();
  if (!content || !state.wsId) return;
  const wsId = state.wsId;
  try {
    const note = await api('POST', `${wsPath(wsId)}/notes`, { content });
    input.value = '';
    if (wsId === state.wsId && !state.loading) {
      upsert(state.notes, note);
      renderMain();
    }
  } catch (err) {
    appToast(`Could not save the note: ${err.message}`, 'error');
  }
}

function editNote(li) {
  const id = li.dataset.key;
  const note = state.notes.get(id);
  if (!note || li.dataset.editing) return;
  inlineEdit(byTestId('note-content', li), {
    value: note.content,
    multiline: true,
    testid: 'note-edit-input',
    maxLength: 10000,
    host: li,
    onSave: async (value) => {
      if (value === note.content) return true;
      const wsId = state.wsId;
      try {
        const saved = await api('PATCH', `${wsPath(wsId)}/notes/${id}`, { content: value });
        if (wsId === state.wsId && state.notes.has(id)) upsert(state.notes, saved);
        return true;
      } catch (err) {
        appToast(`Could not save the note: ${err.message}`, 'error');
        return false;
      }
    },
    onDone: () => renderMain(),
  });
}

async function deleteNote(id) {
  const note = state.notes.get(id);
  if (!note) return;
  const wsId = state.wsId;
  state.notes.delete(id);
  renderMain();
  try {
    await api('DELETE', `${wsPath(wsId)}/notes/${id}`);
  } catch (err) {
    if (err.status !== 404 && wsId === state.wsId) {
      state.notes.set(id, note);
      renderMain();
    }
    if (err.status !== 404) appToast(`Could not delete the note: ${err.message}`, 'error');
  }
}

// --- Members ---

function renderMembers() {
  const ws = currentWs();
  if (!ws) return;
  const manage = canManage(ws);
  const members = [...state.members.values()].sort(
    (a, b) => Number(b.role === 'owner') - Number(a.role === 'owner') || a.name.localeCompare(b.name),
  );
  reconcile(
    byTestId('member-list'),
    members,
    (m) => m.userId,
    (member) =>
      h(
        'li',
        { testid: 'member-item', class: 'member-item' },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }),
        h('div', { class: 'item-body' }, h('span', { class: 'member-name', testid: 'member-name' }), h('span', { class: 'item-meta' })),
        h('span', { class: 'badge member-role' }),
        h('button', {
          type: 'button',
          class: 'ghost small danger',
          testid: 'member-remove',
          onclick: (e) => confirmThen(e.currentTarget, () => removeMember(member.userId)),
        }),
      ),
    (li, member) => {
      const isMe = member.userId === state.me.id;
      li.dataset.userId = member.userId;
      $('.avatar', li).textContent = initials(member.name);
      $('.member-name', li).textContent = isMe ? `${member.name} (you)` : member.name;
      $('.item-meta', li).textContent = member.email;
      $('.member-role', li).textContent = member.role;
      $('.member-role', li).classList.toggle('owner', member.role === 'owner');
      const remove = byTestId('member-remove', li);
      remove.hidden = !(manage || isMe);
      if (!remove.dataset.confirming) remove.textContent = isMe ? 'Leave' : 'Remove';
      remove.dataset.label = isMe ? 'Leave' : 'Remove';
    },
  );
  $('#member-empty').hidden = state.loading || members.length > 0;

  const form = $('#member-add-form');
  form.hidden = !manage;
  if (!manage) return;
  if (state.users === null) {
    state.users = [];
    loadUsers();
    return;
  }
  const select = byTestId('member-user-select');
  const candidates = state.users.filter((u) => !state.members.has(u.id)).sort((a, b) => a.name.localeCompare(b.name));
  const previous = select.value;
  select.replaceChildren(
    h('option', { value: '', text: candidates.length ? 'Choose a person…' : 'Everyone is already a member' }),
    ...candidates.map((u) => h('option', { value: u.id, text: `${u.name} — ${u.email}` })),
  );
  if (candidates.some((u) => u.id === previous)) select.value = previous;
  byTestId('member-add').disabled = candidates.length === 0;
}

async function addMember(event) {
  event.preventDefault();
  const userId = byTestId('member-user-select').value;
  const role = byTestId('member-role-select').value;
  if (!userId || !state.wsId) return;
  const wsId = state.wsId;
  try {
    const member = await api('POST', `${wsPath(wsId)}/members`, { userId, role });
    if (wsId === state.wsId) {
      state.members.set(member.userId, member);
      byTestId('member-user-select').value = '';
      renderMain();
    }
  } catch (err) {
    appToast(`Could not add the member: ${err.message}`, 'error');
  }
}

async function removeMember(userId) {
  const wsId = state.wsId;
  try {
    await api('DELETE', `${wsPath(wsId)}/members/${userId}`);
    if (wsId === state.wsId && userId !== state.me.id) {
      state.members.delete(userId);
      renderMain();
    }
  } catch (err) {
    appToast(
      err.code === 'conflict' ? 'A workspace needs at least one owner.' : `Could not remove the member: ${err.message}`,
      'error',
    );
  }
}

// --- Workspaces ---

async function createWorkspace(event) {
  event.preventDefault();
  const input = byTestId('workspace-create-input');
  const name = input.value.trim();
  if (!name) return;
  try {
    const ws = await api('POST', '/api/workspaces', { name });
    input.value = '';
    state.workspaces.set(ws.id, ws);
    selectWorkspace(ws.id);
  } catch (err) {
    appToast(`Could not create the workspace: ${err.message}`, 'error');
  }
}

function startWorkspaceRename() {
  const ws = currentWs();
  if (!ws) return;
  const form = $('#ws-rename-form');
  form.hidden = false;
  form.dataset.wsId = ws.id;
  byTestId('workspace-name').hidden = true;
  const input = byTestId('workspace-rename-input');
  input.value = ws.name;
  input.focus();
  input.select();
}

async function saveWorkspaceRename(event) {
  event.preventDefault();
  const ws = currentWs();
  const name = byTestId('workspace-rename-input').value.trim();
  if (!ws) return;
  if (!name || name === ws.name) return cancelWorkspaceRename();
  try {
    const saved = await api('PATCH', wsPath(ws.id), { name });
    state.workspaces.set(ws.id, { ...ws, ...saved, role: saved.role ?? ws.role });
    cancelWorkspaceRename();
    renderSidebar();
  } catch (err) {
    appToast(`Could not rename the workspace: ${err.message}`, 'error');
  }
}

function cancelWorkspaceRename() {
  $('#ws-rename-form').hidden = true;
  renderMain();
}

async function deleteWorkspace() {
  const ws = currentWs();
  if (!ws) return;
  try {
    await api('DELETE', wsPath(ws.id));
    state.workspaces.delete(ws.id);
    selectWorkspace(pickWorkspace(null));
  } catch (err) {
    appToast(`Could not delete the workspace: ${err.message}`, 'error');
  }
}

// ---------------------------------------------------------------------------------------------
// Widgets: inline editor, two-step confirm, toasts, notice, flash, sidebar
// ---------------------------------------------------------------------------------------------

/**
 * Replaces `textEl` by an input (or textarea) holding `value`. Enter (Ctrl+Enter for a
 * textarea) or leaving the field saves through `onSave` (which returns true when saved);
 * Escape cancels.
 */
function inlineEdit(textEl, { value, multiline = false, testid, maxLength, host, onSave, onDone }) {
  host.dataset.editing = '1';
  const field = multiline
    ? h('textarea', { class: 'inline-edit', testid, maxLength, rows: 4 })
    : h('input', { class: 'inline-edit', testid, maxLength, type: 'text' });
  field.value = value;
  textEl.hidden = true;
  textEl.after(field);
  field.focus();
  field.select?.();
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    field.remove();
    textEl.hidden = false;
    delete host.dataset.editing;
    onDone?.();
  };
  const save = async () => {
    if (finished) return;
    const next = field.value.trim();
    if (!next) return finish();
    field.disabled = true;
    const ok = await onSave(next);
    if (ok) finish();
    else {
      field.disabled = false;
      field.focus();
    }
  };
  field.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      finish();
    } else if (e.key === 'Enter' && (!multiline || e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      save();
    }
  });
  field.addEventListener('blur', () => {
    if (!field.disabled) save();
  });
}

/** First click arms the button ("Confirm?"), a second click within 4 s runs `action`. */
function confirmThen(button, action) {
  if (button.dataset.confirming) {
    resetConfirm(button);
    action();
    return;
  }
  button.dataset.confirming = '1';
  button.classList.add('confirming');
  button.textContent = 'Confirm?';
  button._confirmTimer = setTimeout(() => resetConfirm(button), 4000);
}

function resetConfirm(button) {
  clearTimeout(button._confirmTimer);
  if (!button.dataset.confirming) return;
  delete button.dataset.confirming;
  button.classList.remove('confirming');
  button.textContent = button.dataset.label || 'Delete';
}

/** A toast for a notification or an announcement (data-testid="toast"). */
function notificationToast({ kind, title, text, from }) {
  pushToast(
    h(
      'div',
      { class: `toast toast-${kind}`, testid: 'toast', role: 'status', dataset: { kind } },
      h('div', { class: 'toast-icon', 'aria-hidden': 'true' }),
      h(
        'div',
        { class: 'toast-body' },
        h('strong', { class: 'toast-title', text: title }),
        h('p', { class: 'toast-text', testid: 'toast-text', text }),
        from ? h('span', { class: 'toast-from', text: `from ${from}` }) : null,
      ),
    ),
    8000,
  );
}

/** A toast the app itself shows (errors, info): data-testid="app-toast". */
function appToast(text, kind = 'info') {
  pushToast(
    h(
      'div',
      { class: `toast toast-${kind}`, testid: 'app-toast', role: kind === 'error' ? 'alert' : 'status' },
      h('div', { class: 'toast-body' }, h('p', { class: 'toast-text', text })),
    ),
    kind === 'error' ? 7000 : 5000,
  );
}

function pushToast(el, ms) {
  const box = $('#toasts');
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×' });
  el.append(close);
  const dismiss = () => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 200);
  };
  close.addEventListener('click', dismiss);
  let timer = setTimeout(dismiss, ms);
  el.addEventListener('mouseenter', () => clearTimeout(timer));
  el.addEventListener('mouseleave', () => (timer = setTimeout(dismiss, 2000)));
  box.append(el);
  while (box.children.length > 5) box.firstElementChild.remove();
}

function showNotice(text) {
  const notice = byTestId('notice');
  $('.notice-text', notice).textContent = text;
  notice.hidden = false;
}

function hideNotice() {
  byTestId('notice').hidden = true;
}

function flash(collection, id) {
  const list = byTestId({ todos: 'todo-list', channels: 'channel-list', notes: 'note-list' }[collection]);
  const el = list && [...list.children].find((child) => child.dataset.key === id);
  if (!el) return;
  el.classList.remove('flash');
  void el.offsetWidth; // restart the animation
  el.classList.add('flash');
}

function openSidebar() {
  document.body.classList.add('sidebar-open');
  byTestId('sidebar-toggle').setAttribute('aria-expanded', 'true');
}

function closeSidebar() {
  document.body.classList.remove('sidebar-open');
  byTestId('sidebar-toggle')?.setAttribute('aria-expanded', 'false');
}

function selectTab(tab) {
  state.tab = tab;
  remember('tab', tab);
  renderMain();
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

function bindHandlers() {
  $('#login-form').addEventListener('submit', onLoginSubmit);
  byTestId('logout').addEventListener('click', onLogout);
  byTestId('sidebar-toggle').addEventListener('click', () =>
    document.body.classList.contains('sidebar-open') ? closeSidebar() : openSidebar(),
  );
  $('#scrim').addEventListener('click', closeSidebar);
  $('#ws-create-form').addEventListener('submit', createWorkspace);
  byTestId('workspace-rename').addEventListener('click', startWorkspaceRename);
  $('#ws-rename-form').addEventListener('submit', saveWorkspaceRename);
  byTestId('workspace-rename-cancel').addEventListener('click', cancelWorkspaceRename);
  byTestId('workspace-delete').addEventListener('click', (e) => confirmThen(e.currentTarget, deleteWorkspace));
  $('#todo-form').addEventListener('submit', addTodo);
  $('#channel-form').addEventListener('submit', addChannel);
  byTestId('channel-rename').addEventListener('click', startChannelRename);
  $('#channel-rename-form').addEventListener('submit', saveChannelRename);
  byTestId('channel-rename-cancel').addEventListener('click', cancelChannelRename);
  byTestId('channel-delete').addEventListener('click', (e) => confirmThen(e.currentTarget, deleteChannel));
  $('#note-form').addEventListener('submit', addNote);
  byTestId('note-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) addNote(e);
  });
  $('#member-add-form').addEventListener('submit', addMember);
  $('.notice-close').addEventListener('click', hideNotice);
  const tabs = TABS.map((tab) => byTestId(`tab-${tab}`));
  tabs.forEach((button, i) => {
    button.addEventListener('click', () => selectTab(TABS[i]));
    button.addEventListener('keydown', (e) => {
      const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!step) return;
      const next = (i + step + TABS.length) % TABS.length;
      selectTab(TABS[next]);
      tabs[next].focus();
    });
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeSidebar();
  });
  // Relative times ("5 minutes ago") stay roughly right.
  setInterval(() => state.me && !state.loading && renderMain(), 60_000);
}

async function boot() {
  bindHandlers();
  try {
    state.me = await api('GET', '/api/me', undefined, { signOutOn401: false });
  } catch (err) {
    showLogin(err.status === 401 || err.status === 0 ? '' : err.message);
    return;
  }
  try {
    await enterApp();
  } catch (err) {
    if (state.me) appToast(`Could not load your workspaces: ${err.message}`, 'error');
  }
}

boot();
