// The web app's state logic (crates/herald/assets/ui/state.js) without a browser: stream
// events and REST answers applied to a state object, and what each tells the view to do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENTS, RESOURCE_EVENTS, WORKSPACE_EVENTS } from '../../crates/herald/assets/ui/events.js';
import {
  addedMe,
  announcementOf,
  applyMemberAdded,
  applyMemberRemoved,
  applyResourceEvent,
  applyWorkspaceEvent,
  canManage,
  createState,
  defaultChannel,
  finishLoad,
  joinedWorkspace,
  messageOf,
  notificationOf,
  pickWorkspace,
  receiveResourceEvent,
  signOut,
  startLoad,
  streamConnected,
  switchWorkspace,
  upsert,
} from '../../crates/herald/assets/ui/state.js';

const ME = { id: 'u-me', name: 'Me', email: 'me@example.com', role: 'user' };
const OTHER = { id: 'u-other', name: 'Other' };
const WS = 'ws-1';

const at = (minute) => `2026-01-01T00:${String(minute).padStart(2, '0')}:00Z`;
const todo = (id, title, minute = 0, extra = {}) => ({ id, title, done: false, createdAt: at(0), updatedAt: at(minute), ...extra });

/** A state signed in as ME, showing workspace WS (loaded, empty), where I am `role`. */
function signedIn({ role = 'owner', me = ME } = {}) {
  const state = createState();
  state.me = { ...me };
  state.workspaces.set(WS, { id: WS, name: 'Alpha', role });
  switchWorkspace(state, WS);
  return state;
}

/** A `<collection>:<action>` event of WS by `user`. */
const resourceEvent = (collection, action, data, user = OTHER) => ({
  type: `${collection}:${action}`,
  resourceType: collection,
  action,
  workspaceId: WS,
  data,
  user,
});

test('event names are defined once, each distinct, and cover every collection action', () => {
  const names = Object.values(EVENTS);
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(
    [...RESOURCE_EVENTS].sort(),
    ['channels', 'notes', 'todos'].flatMap((c) => ['created', 'deleted', 'updated'].map((a) => `${c}:${a}`)).sort(),
  );
  assert.deepEqual(WORKSPACE_EVENTS, ['workspaces:created', 'workspaces:updated', 'workspaces:deleted']);
  for (const name of [...RESOURCE_EVENTS, ...WORKSPACE_EVENTS]) assert.ok(names.includes(name), name);
  assert.throws(() => {
    EVENTS.todoCreated = 'x';
  }, TypeError);
});

test('created, updated and deleted events change the collection, and say whether to flash', () => {
  const state = signedIn();
  const created = receiveResourceEvent(state, resourceEvent('todos', 'created', todo('t1', 'Milk')));
  assert.deepEqual(created, { collection: 'todos', id: 't1', flash: true, channelGone: null });
  assert.equal(state.todos.get('t1').title, 'Milk');

  const updated = receiveResourceEvent(state, resourceEvent('todos', 'updated', todo('t1', 'Oat milk', 1, { done: true }), ME));
  assert.deepEqual(updated, { collection: 'todos', id: 't1', flash: false, channelGone: null }, 'my own change does not flash');
  assert.equal(state.todos.get('t1').title, 'Oat milk');
  assert.equal(state.todos.get('t1').done, true);

  const deleted = receiveResourceEvent(state, resourceEvent('todos', 'deleted', { id: 't1' }));
  assert.equal(deleted.flash, false, 'a deleted item does not flash');
  assert.equal(state.todos.size, 0);
});

test('duplicates and stale updates change nothing', () => {
  const state = signedIn();
  const fresh = todo('t1', 'New title', 5);
  receiveResourceEvent(state, resourceEvent('todos', 'updated', fresh));
  // The same event again (a replay after a load's position): nothing changes, nothing flashes.
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'updated', fresh)), null);
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'updated', { ...fresh })), null);
  assert.equal(state.todos.size, 1);
  // The same timestamp with other fields is a change (two edits within one timestamp).
  assert.ok(receiveResourceEvent(state, resourceEvent('todos', 'updated', { ...fresh, done: true })));
  assert.equal(state.todos.get('t1').done, true);
  // An older update arriving late (out of order) is ignored.
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'updated', todo('t1', 'Old title', 2))), null);
  assert.equal(state.todos.get('t1').title, 'New title');
  // A second delete of the same id is a no-op.
  assert.ok(receiveResourceEvent(state, resourceEvent('todos', 'deleted', { id: 't1' })));
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'deleted', { id: 't1' })), null);
});

test('upsert merges fields and keeps the newer of two versions', () => {
  const map = new Map();
  assert.equal(upsert(map, { id: 'a', title: 'x', updatedAt: at(3), extra: 1 }), true);
  assert.equal(upsert(map, { id: 'a', title: 'y', updatedAt: at(4) }), true);
  assert.deepEqual(map.get('a'), { id: 'a', title: 'y', updatedAt: at(4), extra: 1 });
  assert.equal(upsert(map, { id: 'a', title: 'z', updatedAt: at(1) }), false);
  assert.equal(map.get('a').title, 'y');
  assert.equal(upsert(map, { id: 'a', title: 'no time' }), true, 'without timestamps the event wins');
  assert.equal(upsert(map, { id: 'a', title: 'no time' }), true, 'and is applied again');
  const held = { id: 'b', title: 'x', updatedAt: at(3) };
  map.set('b', held);
  assert.equal(upsert(map, { id: 'b', title: 'x', updatedAt: at(3) }), false, 'the same version is no change');
  assert.equal(map.get('b'), held);
});

test('a load, then every event after its position (some it already holds): each change once, the newest wins', () => {
  // The load is consistent with a position P; the stream replays every event after P, some
  // of which the load already reflects (P is taken before the read began), then goes live.
  const state = signedIn();
  startLoad(state);
  finishLoad(state, {
    todos: [todo('t1', 'Renamed', 5), todo('t2', 'Kept', 2)],
    channels: [],
    notes: [],
    members: [{ userId: ME.id, name: ME.name, role: 'owner' }],
  });
  const after = [
    resourceEvent('todos', 'created', todo('t1', 'First title', 0)), // held, older: no change
    resourceEvent('todos', 'updated', todo('t1', 'Renamed', 5)), // held, same: no change
    resourceEvent('todos', 'created', todo('t9', 'Made and deleted', 3)), // before the read...
    resourceEvent('todos', 'deleted', { id: 't9' }), // ...and gone before it: gone again
    resourceEvent('todos', 'created', todo('t3', 'Between load and stream', 6)), // new
    resourceEvent('todos', 'updated', todo('t2', 'Edited after the load', 7)), // newer
  ];
  const outcomes = after.map((event) => receiveResourceEvent(state, event));
  assert.deepEqual(
    outcomes.map((outcome) => outcome !== null),
    [false, false, true, true, true, true],
    'the changes the load held change nothing and flash nothing',
  );
  assert.deepEqual(
    [...state.todos.values()].map((t) => [t.id, t.title]).sort(),
    [
      ['t1', 'Renamed'],
      ['t2', 'Edited after the load'],
      ['t3', 'Between load and stream'],
    ],
  );
});

test('events of another workspace, without an id, or of an unknown collection are ignored', () => {
  const state = signedIn();
  assert.equal(receiveResourceEvent(state, { ...resourceEvent('todos', 'created', todo('t1', 'x')), workspaceId: 'ws-2' }), null);
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'created', { title: 'no id' })), null);
  assert.equal(receiveResourceEvent(state, resourceEvent('members', 'created', { id: 'm', userId: 'm' })), null);
  assert.equal(receiveResourceEvent(state, resourceEvent('loading', 'created', { id: 'x' })), null);
  assert.equal(receiveResourceEvent(state, null), null);
  assert.equal(state.todos.size + state.members.size, 0);
});

test("only my own notes are kept", () => {
  const state = signedIn();
  const note = (id, createdBy) => ({ id, content: 'secret', createdBy, createdAt: at(0), updatedAt: at(0) });
  assert.equal(receiveResourceEvent(state, resourceEvent('notes', 'created', note('n1', OTHER.id))), null);
  assert.ok(receiveResourceEvent(state, resourceEvent('notes', 'created', note('n2', ME.id), ME)));
  assert.deepEqual([...state.notes.keys()], ['n2']);
});

test('events that arrive while loading are queued and applied quietly after the GETs', () => {
  const state = signedIn();
  startLoad(state);
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'updated', todo('t1', 'From event', 9))), null);
  assert.equal(receiveResourceEvent(state, resourceEvent('todos', 'created', todo('t2', 'Only in event', 9))), null);
  assert.equal(applyMemberAdded(state, { type: EVENTS.memberAdded, workspaceId: WS, data: { userId: 'u-new', name: 'New', role: 'member' } }), false);
  assert.equal(applyMemberRemoved(state, { type: EVENTS.memberRemoved, workspaceId: WS, data: { userId: 'u-gone' } }), null);
  assert.equal(state.todos.size, 0, 'nothing applied while loading');
  assert.equal(state.pending.length, 4);

  finishLoad(state, {
    todos: [todo('t1', 'From GET', 5), todo('t3', 'GET only', 5)],
    channels: [],
    notes: [],
    members: [
      { userId: ME.id, name: ME.name, role: 'member' },
      { userId: 'u-gone', name: 'Gone', role: 'member' },
    ],
  });
  assert.equal(state.loading, false);
  assert.deepEqual(state.pending, []);
  assert.equal(state.todos.get('t1').title, 'From event', 'the newer event wins over the GET');
  assert.deepEqual([...state.todos.keys()].sort(), ['t1', 't2', 't3']);
  assert.deepEqual([...state.members.keys()].sort(), [ME.id, 'u-new']);
  assert.equal(state.workspaces.get(WS).role, 'member', 'my role comes from the member list');
});

test('a queued event older than the GET does not undo it', () => {
  const state = signedIn();
  startLoad(state);
  receiveResourceEvent(state, resourceEvent('todos', 'updated', todo('t1', 'Old', 1)));
  finishLoad(state, { todos: [todo('t1', 'Current', 5)], channels: [], notes: [], members: [] });
  assert.equal(state.todos.get('t1').title, 'Current');
});

test('the channel shown: stored, else the default one, and moved when it is deleted', () => {
  const channel = (id, name, minute, extra = {}) => ({ id, name, createdAt: at(minute), ...extra });
  const channels = [channel('c-b', 'b', 1), channel('c-gen', 'general', 2, { isDefault: true }), channel('c-a', 'a', 0)];
  const load = (stored) => {
    const state = signedIn();
    startLoad(state);
    finishLoad(state, { todos: [], channels, notes: [], members: [] }, stored);
    return state;
  };
  assert.equal(load('c-b').channelId, 'c-b');
  assert.equal(load('c-missing').channelId, 'c-gen');
  assert.equal(load(null).channelId, 'c-gen');

  const state = load('c-b');
  const gone = receiveResourceEvent(state, resourceEvent('channels', 'deleted', { id: 'c-b', name: 'b' }));
  assert.deepEqual(gone.channelGone, { name: 'b', by: 'Other', now: 'general' });
  assert.equal(state.channelId, 'c-gen');

  // Without a default one: `general` by name, else the oldest.
  const plain = signedIn();
  plain.channels = new Map([channel('c-b', 'b', 1), channel('c-a', 'a', 0)].map((c) => [c.id, c]));
  assert.equal(defaultChannel(plain).id, 'c-a');
  plain.channels.set('c-g', channel('c-g', 'general', 3));
  assert.equal(defaultChannel(plain).id, 'c-g');
});

test('switching workspaces empties the collections; staying keeps them', () => {
  const state = signedIn();
  receiveResourceEvent(state, resourceEvent('todos', 'created', todo('t1', 'x')));
  assert.equal(switchWorkspace(state, WS), false);
  assert.equal(state.todos.size, 1);
  assert.equal(switchWorkspace(state, 'ws-2'), true);
  assert.equal(state.todos.size, 0);
  assert.equal(state.channelId, null);
});

test('workspace events: created, updated (only known ones unless admin), deleted', () => {
  const state = signedIn();
  const created = applyWorkspaceEvent(state, { type: EVENTS.workspaceCreated, data: { id: 'ws-2', name: 'Beta', createdBy: ME.id } });
  assert.deepEqual(created, { deleted: false, current: false, notice: null });
  assert.equal(state.workspaces.get('ws-2').role, 'owner');
  assert.equal(state.refetchOnConnect, true, 'the next stream covers the new workspace');

  assert.equal(applyWorkspaceEvent(state, { type: EVENTS.workspaceUpdated, data: { id: 'ws-9', name: 'Unknown' } }), null);
  assert.equal(state.workspaces.has('ws-9'), false);
  const renamed = applyWorkspaceEvent(state, { type: EVENTS.workspaceUpdated, data: { id: WS, name: 'Renamed' } });
  assert.deepEqual(renamed, { deleted: false, current: true, notice: null });
  assert.deepEqual(state.workspaces.get(WS), { id: WS, name: 'Renamed', role: 'owner' }, 'my role is kept');

  const deleted = applyWorkspaceEvent(state, { type: EVENTS.workspaceDeleted, data: { id: WS, name: 'Renamed' }, user: OTHER });
  assert.deepEqual(deleted, { deleted: true, current: true, notice: 'The workspace “Renamed” was deleted by Other.' });
  assert.equal(applyWorkspaceEvent(state, { type: EVENTS.workspaceDeleted, data: { id: WS } }), null, 'a duplicate');
  assert.equal(pickWorkspace(state, WS), 'ws-2');

  const admin = signedIn({ me: { ...ME, role: 'admin' } });
  applyWorkspaceEvent(admin, { type: EVENTS.workspaceUpdated, data: { id: 'ws-9', name: 'Someone else’s' } });
  assert.equal(admin.workspaces.get('ws-9').role, null, 'an admin sees every workspace');
  assert.equal(canManage(admin, admin.workspaces.get('ws-9')), true);
});

test('members: added to the workspace shown, added myself elsewhere, removed', () => {
  const state = signedIn({ role: 'member' });
  assert.equal(canManage(state), false);
  const added = { type: EVENTS.memberAdded, workspaceId: WS, data: { userId: 'u-2', name: 'Two', role: 'member' } };
  assert.equal(addedMe(state, added), null);
  assert.equal(applyMemberAdded(state, added), true);
  assert.equal(state.members.get('u-2').name, 'Two');

  // Promoted: my role in the workspace follows.
  applyMemberAdded(state, { type: EVENTS.memberAdded, workspaceId: WS, data: { userId: ME.id, name: ME.name, role: 'owner' } });
  assert.equal(state.workspaces.get(WS).role, 'owner');
  assert.equal(canManage(state), true);

  // Added to another workspace: fetch it, refetch the list when the stream restarts.
  const joined = { type: EVENTS.memberAdded, data: { userId: ME.id, workspaceId: 'ws-2', role: 'member' }, user: OTHER };
  assert.equal(addedMe(state, joined), 'ws-2');
  assert.equal(state.refetchOnConnect, true);
  assert.equal(applyMemberAdded(state, joined), false, 'not the workspace shown');
  assert.equal(joinedWorkspace(state, { id: 'ws-2', name: 'Beta', role: 'member' }), true);
  assert.equal(joinedWorkspace(state, { id: 'ws-2', name: 'Beta', role: 'member' }), false, 'a duplicate');

  const removed = applyMemberRemoved(state, { type: EVENTS.memberRemoved, workspaceId: WS, data: { userId: 'u-2' } });
  assert.deepEqual(removed, { self: false, kept: true, current: true, notice: null });
  assert.equal(state.members.has('u-2'), false);
  assert.equal(applyMemberRemoved(state, { type: EVENTS.memberRemoved, workspaceId: 'ws-2', data: { userId: 'u-3' } }), null);
  assert.equal(applyMemberRemoved(state, { type: EVENTS.memberRemoved, data: {} }), null, 'no workspace');
});

test('removed myself: the workspace goes, unless I am an admin', () => {
  const event = (user) => ({ type: EVENTS.memberRemoved, workspaceId: WS, data: { userId: ME.id }, user });
  const state = signedIn();
  assert.deepEqual(applyMemberRemoved(state, event(OTHER)), {
    self: true,
    kept: false,
    current: true,
    notice: 'You were removed from Alpha by Other. Its updates no longer reach you.',
  });
  assert.equal(state.workspaces.has(WS), false);
  assert.equal(state.refetchOnConnect, true);

  const left = signedIn();
  assert.equal(applyMemberRemoved(left, event(ME)).notice, 'You left Alpha.');

  const admin = signedIn({ me: { ...ME, role: 'admin' } });
  admin.members.set(ME.id, { userId: ME.id, role: 'owner' });
  assert.deepEqual(applyMemberRemoved(admin, event(OTHER)), {
    self: true,
    kept: true,
    current: true,
    notice: 'You were removed from Alpha by Other.',
  });
  assert.equal(admin.workspaces.get(WS).role, null);
  assert.equal(admin.members.has(ME.id), false);
});

test('connected: nothing to do at first (the stream starts at the load), refetch when coverage changed', () => {
  const state = signedIn();
  assert.equal(streamConnected(state, { workspaces: [WS] }), null, 'the first connection');
  assert.equal(streamConnected(state, { workspaces: [WS] }), null, 'covers what we show');
  assert.equal(streamConnected(state, { workspaces: [WS, 'ws-2'] }), 'refetch', 'added while away');
  assert.equal(streamConnected(state, { workspaces: [] }), 'refetch', 'removed while away');
  state.refetchOnConnect = true;
  assert.equal(streamConnected(state, { workspaces: [WS] }), 'refetch');
  assert.equal(state.refetchOnConnect, false);

  const first = signedIn();
  assert.equal(streamConnected(first, { workspaces: ['ws-other'] }), null, 'the first connection loads anyway');
  const admin = signedIn({ me: { ...ME, role: 'admin' } });
  streamConnected(admin, {});
  assert.equal(streamConnected(admin, { workspaces: [] }), null, "an admin's list does not follow coverage");
});

test('notifications and announcements become toasts', () => {
  const state = signedIn();
  assert.equal(messageOf(null), '');
  assert.equal(messageOf('plain'), 'plain');
  assert.equal(messageOf({ text: 'a text' }), 'a text');
  assert.equal(messageOf({ n: 1 }), '{"n":1}');
  assert.deepEqual(notificationOf({ data: { title: 'Deploy', message: 'done' }, user: OTHER }), {
    kind: 'notification',
    title: 'Deploy',
    text: 'done',
    from: 'Other',
  });
  assert.equal(notificationOf({ data: { title: 'Only a title' } }).title, 'Notification');
  assert.deepEqual(announcementOf(state, { workspaceId: WS, data: 'Hello' }), {
    kind: 'announcement',
    title: 'Announcement · Alpha',
    text: 'Hello',
    from: undefined,
  });
});

test('signing out forgets the session but keeps the tab', () => {
  const state = signedIn();
  state.tab = 'notes';
  receiveResourceEvent(state, resourceEvent('todos', 'created', todo('t1', 'x')));
  signOut(state);
  assert.deepEqual({ ...state, tab: 'todos' }, createState());
  assert.equal(state.tab, 'notes');
});
