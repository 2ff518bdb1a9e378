// The web app's state and the pure logic that changes it: REST answers and stream events are
// applied to a state object passed in. No DOM, no storage, no network, no module state, so
// that it runs (and is tested) in Node as well as in the browser.
//
// Functions that apply an event return what the view should do about it (null: nothing
// changed); the caller renders.

import { COLLECTIONS, EVENTS } from './events.js';

/** The tabs of a workspace, in order. */
export const TABS = Object.freeze(['todos', 'channels', 'notes', 'members']);

/** A fresh state: nobody signed in. */
export function createState() {
  return {
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
    /** who is online in the current workspace: subscriber id (one per open stream) -> { userId, name } */
    online: new Map(),
    channelId: null,
    /** every user, for the member picker (loaded on demand) */
    users: null,
    /** true while the current workspace's data loads; events for it are queued in `pending` */
    loading: false,
    pending: [],
    /** refetch the workspace list once the stream (re)connects: membership changed */
    refetchOnConnect: false,
    connectedOnce: false,
  };
}

/** Forgets everything about the session (the selected tab stays). */
export function signOut(state) {
  Object.assign(state, { ...createState(), tab: state.tab });
}

/** Creation order, then id. */
export const byCreated = (a, b) =>
  Date.parse(a.createdAt) - Date.parse(b.createdAt) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * Inserts or replaces by id; returns whether anything changed. What we hold wins when it is
 * newer (a queued event older than a GET), and when it is the same version with the same
 * fields (an event replayed after the position of a load that already held its change).
 */
export function upsert(map, item) {
  const held = map.get(item.id);
  if (held && item.updatedAt && held.updatedAt) {
    const [was, now] = [Date.parse(held.updatedAt), Date.parse(item.updatedAt)];
    if (now < was) return false;
    const same = (key) => JSON.stringify(held[key]) === JSON.stringify(item[key]);
    if (now === was && Object.keys(item).every(same)) return false;
  }
  map.set(item.id, held ? { ...held, ...item } : item);
  return true;
}

export const currentWs = (state) => state.workspaces.get(state.wsId) ?? null;

/** Whether I may rename, delete and manage the members of `ws`. */
export const canManage = (state, ws = currentWs(state)) => !!ws && (state.me?.role === 'admin' || ws.role === 'owner');

/** The workspaces by name, then id. */
export const sortedWorkspaces = (state) =>
  [...state.workspaces.values()].sort((a, b) => a.name.localeCompare(b.name) || (a.id < b.id ? -1 : 1));

/** The workspace to show: the preferred one if still there, else the first by name (mine first). */
export function pickWorkspace(state, preferred) {
  if (preferred && state.workspaces.has(preferred)) return preferred;
  const sorted = sortedWorkspaces(state);
  const mine = sorted.find((ws) => ws.role);
  return (mine ?? sorted[0])?.id ?? null;
}

/** The channel to show when none is chosen: the default one, else `general`, else the oldest. */
export function defaultChannel(state) {
  const channels = [...state.channels.values()];
  return channels.find((c) => c.isDefault) ?? channels.find((c) => c.name === 'general') ?? channels.sort(byCreated)[0] ?? null;
}

export const memberName = (state, userId) =>
  state.members.get(userId)?.name ?? (userId === state.me?.id ? state.me.name : 'someone');

/** Replaces the workspace list with a GET's items. */
export function setWorkspaces(state, items) {
  state.workspaces = new Map((items ?? []).map((ws) => [ws.id, ws]));
}

/** Shows `wsId`; a different workspace starts empty. Returns whether it changed. */
export function switchWorkspace(state, wsId) {
  const changed = wsId !== state.wsId;
  state.wsId = wsId;
  if (changed) {
    state.todos = new Map();
    state.channels = new Map();
    state.notes = new Map();
    state.members = new Map();
    state.online = new Map();
    state.channelId = null;
  }
  return changed;
}

/** The current workspace starts loading: its events are queued until `finishLoad`. */
export function startLoad(state) {
  state.loading = true;
  state.pending = [];
}

/**
 * Takes the current workspace's GET answers, then applies (quietly) the events queued while
 * they were on their way: `upsert` keeps the newer of the two. `storedChannel` is the channel
 * last shown in this workspace, if any.
 */
export function finishLoad(state, { todos, channels, notes, members, presence = [] }, storedChannel = null) {
  state.online = new Map();
  for (const user of presence) {
    for (const subscriber of user.subscribers ?? []) state.online.set(subscriber, { userId: user.userId, name: user.name });
  }
  state.todos = new Map(todos.map((t) => [t.id, t]));
  state.channels = new Map(channels.map((c) => [c.id, c]));
  state.notes = new Map(notes.filter((n) => n.createdBy === state.me.id).map((n) => [n.id, n]));
  state.members = new Map(members.map((m) => [m.userId, m]));
  const me = state.members.get(state.me.id);
  const ws = currentWs(state);
  if (ws && me) ws.role = me.role;
  if (!state.channels.has(state.channelId)) {
    state.channelId = state.channels.has(storedChannel) ? storedChannel : (defaultChannel(state)?.id ?? null);
  }
  state.loading = false;
  const pending = state.pending;
  state.pending = [];
  for (const event of pending) {
    if (event.type === EVENTS.memberAdded) state.members.set(event.data.userId, event.data);
    else if (event.type === EVENTS.memberRemoved) state.members.delete(event.data.userId);
    else if (event.type === 'Subscription') applyPresence(state, event);
    else applyResourceEvent(state, event, { quiet: true });
  }
}

/** The load ended without `finishLoad` (failed, or superseded): drop what was queued. */
export function endLoad(state) {
  state.loading = false;
  state.pending = [];
}

/**
 * The stream connected; `data.workspaces` lists the workspaces it covers. Returns `'refetch'`
 * (reload the list) or null. (The first connection needs no reload: the stream starts at the
 * position of the load before it.)
 */
export function streamConnected(state, data) {
  const first = !state.connectedOnce;
  state.connectedOnce = true;
  // If the stream covers other workspaces than those we are a member of, our list is stale
  // (we were added or removed while away).
  const known = [...state.workspaces.values()].filter((ws) => ws.role).map((ws) => ws.id);
  const covered = Array.isArray(data?.workspaces) ? data.workspaces : null;
  const differs =
    covered && state.me?.role !== 'admin' && (covered.length !== known.length || known.some((id) => !covered.includes(id)));
  if (!first && (state.refetchOnConnect || differs)) {
    state.refetchOnConnect = false;
    return 'refetch';
  }
  return null;
}

/** A `todos:*`, `channels:*` or `notes:*` event: queued while loading, applied otherwise. */
export function receiveResourceEvent(state, event) {
  if (!event || event.workspaceId !== state.wsId) return null;
  if (state.loading) {
    state.pending.push(event);
    return null;
  }
  return applyResourceEvent(state, event);
}

/**
 * Applies a collection event to the current workspace. Returns null if nothing changed, else
 * `{ collection, id, flash, channelGone }`: `flash` when someone else changed an item we show,
 * `channelGone` (`{ name, by, now }`) when someone else deleted the channel we were in.
 */
export function applyResourceEvent(state, event, { quiet = false } = {}) {
  const { resourceType: collection, action, data: item } = event;
  if (!COLLECTIONS.includes(collection) || !item?.id) return null;
  const map = state[collection];
  if (collection === 'notes' && item.createdBy !== state.me.id) return null; // "my notes" only
  const byOther = !!event.user?.id && event.user.id !== state.me.id && !quiet;
  let channelGone = null;
  if (action === 'deleted') {
    if (!map.delete(item.id)) return null;
    if (collection === 'channels' && state.channelId === item.id) {
      const general = defaultChannel(state);
      state.channelId = general?.id ?? null;
      if (byOther) channelGone = { name: item.name, by: event.user.name, now: general?.name ?? 'general' };
    }
  } else if (!upsert(map, item)) {
    return null;
  }
  return { collection, id: item.id, flash: byOther && action !== 'deleted', channelGone };
}

/**
 * A `workspaces:*` event. Returns null if nothing changed, else `{ deleted, current, notice }`:
 * `current` when it is the workspace shown, `notice` a text to show.
 */
export function applyWorkspaceEvent(state, event) {
  const ws = event?.data;
  if (!ws?.id) return null;
  const held = state.workspaces.get(ws.id);
  if (event.type === EVENTS.workspaceDeleted) {
    if (!held) return null;
    state.workspaces.delete(ws.id);
    const notice =
      event.user?.id !== state.me.id ? `The workspace “${ws.name}” was deleted by ${event.user?.name ?? 'someone'}.` : null;
    return { deleted: true, current: state.wsId === ws.id, notice };
  }
  if (event.type === EVENTS.workspaceCreated) {
    // The server ends the stream after this event; the next one includes the new workspace.
    state.refetchOnConnect = true;
  }
  const role = held?.role ?? (ws.createdBy === state.me.id ? 'owner' : null);
  if (!held && event.type === EVENTS.workspaceUpdated && state.me.role !== 'admin') return null;
  state.workspaces.set(ws.id, { ...held, ...ws, role });
  return { deleted: false, current: ws.id === state.wsId, notice: null };
}

/** The member and workspace id of a `members:*` event, or null. */
export function memberEventTarget(event) {
  const member = event?.data;
  const wsId = event?.workspaceId ?? member?.workspaceId;
  return member && wsId ? { member, wsId } : null;
}

/**
 * If a `members:added` event adds me, notes that the next stream covers another set of
 * workspaces and returns the workspace's id (to fetch it); else null.
 */
export function addedMe(state, event) {
  const target = memberEventTarget(event);
  if (!target || target.member.userId !== state.me.id) return null;
  state.refetchOnConnect = true;
  return target.wsId;
}

/** I was added to `ws` (fetched after a `members:added`): returns true if it is new to me. */
export function joinedWorkspace(state, ws) {
  const known = state.workspaces.has(ws.id);
  state.workspaces.set(ws.id, ws);
  return !known;
}

/**
 * A `members:added` event for the members of the current workspace: queued while loading.
 * Returns true when the members changed.
 */
export function applyMemberAdded(state, event) {
  const target = memberEventTarget(event);
  if (!target || target.wsId !== state.wsId) return false;
  if (state.loading) {
    state.pending.push(event);
    return false;
  }
  const { member } = target;
  state.members.set(member.userId, member);
  const ws = currentWs(state);
  if (ws && member.userId === state.me.id) ws.role = member.role;
  return true;
}

/**
 * A `members:removed` event. Returns null if nothing changed, else `{ self, kept, current,
 * notice }`: `self` when I was the one removed, `kept` when I still see the workspace (an
 * admin), `current` when it is the workspace shown, `notice` a text to show.
 */
export function applyMemberRemoved(state, event) {
  const target = memberEventTarget(event);
  if (!target) return null;
  const { member, wsId } = target;
  const current = wsId === state.wsId;
  if (member.userId === state.me.id) {
    const ws = state.workspaces.get(wsId);
    const name = ws?.name ?? member.workspaceName ?? 'a workspace';
    const self = event.user?.id === state.me.id;
    const by = event.user?.name ?? 'an owner';
    state.refetchOnConnect = true;
    if (state.me.role === 'admin') {
      // Admins still see every workspace, just not as a member.
      if (ws) ws.role = null;
      if (current) state.members.delete(member.userId);
      return { self: true, kept: true, current, notice: self ? null : `You were removed from ${name} by ${by}.` };
    }
    state.workspaces.delete(wsId);
    const notice = self ? `You left ${name}.` : `You were removed from ${name} by ${by}. Its updates no longer reach you.`;
    return { self: true, kept: false, current, notice };
  }
  if (!current) return null;
  if (state.loading) {
    state.pending.push(event);
    return null;
  }
  state.members.delete(member.userId);
  return { self: false, kept: true, current, notice: null };
}

/** The text of a notification's or announcement's data. */
export function messageOf(data) {
  if (data === null || data === undefined) return '';
  if (typeof data === 'string') return data;
  if (typeof data === 'object') {
    for (const key of ['message', 'text', 'body', 'title']) {
      if (typeof data[key] === 'string') return data[key];
    }
  }
  return JSON.stringify(data);
}

/** The toast of a `notification` event: `{ kind, title, text, from }`. */
export function notificationOf(event) {
  const data = event?.data;
  const title =
    data && typeof data === 'object' && typeof data.title === 'string' && data.message ? data.title : 'Notification';
  return { kind: 'notification', title, text: messageOf(data), from: event?.user?.name };
}

/** The toast of an `announcement` event: `{ kind, title, text, from }`. */
export function announcementOf(state, event) {
  const ws = state.workspaces.get(event?.workspaceId);
  return {
    kind: 'announcement',
    title: ws ? `Announcement · ${ws.name}` : 'Announcement',
    text: messageOf(event?.data),
    from: event?.user?.name,
  };
}

/** The workspace a `presence` event is about (its topic is `herald:ws/<id>/presence`), or null. */
export function presenceWorkspace(event) {
  const match = /^herald:ws\/([^/]+)\/presence$/.exec(event?.id ?? '');
  return match ? match[1] : null;
}

/**
 * A `presence` event (a subscription document: `subscriber`, `active`, `payload` with the
 * user's `userId` and `name`): queued while loading, applied otherwise. Returns true when the
 * current workspace's online list may have changed. Applying one twice changes nothing.
 */
export function receivePresenceEvent(state, event) {
  if (!event || presenceWorkspace(event) !== state.wsId) return null;
  if (state.loading) {
    state.pending.push(event);
    return null;
  }
  applyPresence(state, event);
  return true;
}

function applyPresence(state, event) {
  if (typeof event.subscriber !== 'string') return;
  const { userId, name } = event.payload ?? {};
  if (event.active && typeof userId === 'string') state.online.set(event.subscriber, { userId, name: String(name ?? '') });
  else state.online.delete(event.subscriber);
}

/** The users online in the current workspace, once each however many streams they have open, by name. */
export function onlineUsers(state) {
  const users = new Map();
  for (const user of state.online.values()) users.set(user.userId, user);
  return [...users.values()].sort((a, b) => a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : 1));
}
