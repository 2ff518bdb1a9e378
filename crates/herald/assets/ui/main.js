// Herald's web app: sign in, then workspaces with their todos, channels, private notes and
// members, all kept live by ONE event stream (`/api/events`, through /herald.js).
//
// State is loaded with REST once per workspace; after that every event's payload is applied
// to the local state directly (upsert by id on created/updated, remove on deleted). The first
// load comes before the stream: the stream opens right after the log position that load
// answered with (`Herald-Position`), so no change made in between is missed; one the load
// already holds may come again, and changes nothing (state.js compares versions). State is
// refetched only when the server says our position in the log is lost (`reset`) and after
// membership changes (the server ends the stream so the next one covers the new set of
// workspaces).
//
// This module is the entry point and the controller: it owns the one state object (changed
// by state.js), the stream and the REST client, and hands them to the views as `app`.
//
// All user text goes into the DOM through textContent / text nodes, never innerHTML.

import { createApi, listAll, wsPath } from './api.js';
import { $, byTestId, initials, sleep } from './dom.js';
import { recall, remember } from './prefs.js';
import {
  TABS,
  addedMe,
  announcementOf,
  applyMemberAdded,
  applyMemberRemoved,
  applyWorkspaceEvent,
  createState,
  endLoad,
  finishLoad,
  joinedWorkspace,
  notificationOf,
  pickWorkspace,
  receivePresenceEvent,
  receiveResourceEvent,
  setWorkspaces,
  signOut,
  startLoad,
  streamConnected,
  switchWorkspace,
} from './state.js';
import { openStream } from './stream.js';
import { bindChannels } from './views/channels.js';
import { bindLogin, showLogin, showView } from './views/login.js';
import { bindMembers } from './views/members.js';
import { bindNotes } from './views/notes.js';
import { bindSidebar, closeSidebar, renderSidebar } from './views/sidebar.js';
import { renderStatus, renderTransport } from './views/status.js';
import { bindTodos } from './views/todos.js';
import { bindWorkspace, renderMain } from './views/workspace.js';
import { appToast, clearToasts, flash, hideNotice, notificationToast, showNotice } from './widgets.js';

/** The app's state: what is shown, changed only through state.js and the views. */
const state = createState();

/** What belongs to the session besides the state. */
const session = {
  /** the open stream (`{ ready, close }`), if signed in */
  stream: null,
  /** bumped by each workspace load: an older load's answers are dropped */
  loadSeq: 0,
  /** the pending check of `/api/me` after the stream failed */
  meCheck: null,
};

const api = createApi({
  onUnauthorized: () => {
    if (state.me) signedOut('Your session has ended. Please sign in again.');
  },
});

/** What the views get: the state, the REST client, and the controller's actions. */
const app = {
  state,
  api,
  enterApp,
  signedOut,
  selectWorkspace,
  renderMain: () => renderMain(app),
  renderSidebar: () => renderSidebar(app),
  remember: (what, value) => remember(state.me?.id, what, value),
  recall: (what) => recall(state.me?.id, what),
};

function render() {
  renderSidebar(app);
  renderMain(app);
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

/** Forgets everything about the session and shows the sign-in form. */
function signedOut(message) {
  session.stream?.close();
  session.stream = null;
  session.loadSeq++;
  signOut(state);
  hideNotice();
  clearToasts();
  showLogin(message);
}

async function enterApp() {
  showView('app');
  byTestId('user-name').textContent = state.me.name;
  $('#user-avatar').textContent = initials(state.me.name);
  $('#user-email').textContent = state.me.email;
  $('#user-role').hidden = state.me.role !== 'admin';
  const tab = app.recall('tab');
  state.tab = TABS.includes(tab) ? tab : 'todos';
  render();

  // Load, then open the stream after the position of that load: whatever changed since
  // arrives on it. The workspace's data loads after the stream is open; events for it that
  // arrive meanwhile are queued until it is in (startLoad/finishLoad in state.js).
  const position = await loadWorkspaces();
  startStream(position);
  selectWorkspace(pickWorkspace(state, app.recall('ws')));
}

// ---------------------------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------------------------

/** Opens the one stream, right after log position `after`; resolves on its first `connected`. */
function startStream(after) {
  session.stream?.close();
  session.stream = openStream(after, {
    onStatus,
    onChange: renderTransport,
    connected: (data) => {
      if (streamConnected(state, data) === 'refetch') refreshWorkspaces();
    },
    reset: () => refreshWorkspaces({ reloadCurrent: true }),
    resource: onResourceEvent,
    workspace: onWorkspaceEvent,
    memberAdded: onMemberAdded,
    memberRemoved: onMemberRemoved,
    notification: (event) => notificationToast(notificationOf(event)),
    announcement: (event) => notificationToast(announcementOf(state, event)),
    presence: (event) => receivePresenceEvent(state, event) && app.renderMain(),
  });
  return session.stream.ready;
}

function onStatus(status) {
  renderStatus(status);
  // A stream that fails may mean the session ended (signed out elsewhere): check once.
  if ((status === 'reconnecting' || status === 'offline') && state.connectedOnce && !session.meCheck) {
    session.meCheck = sleep(1000)
      .then(() => (state.me ? api('GET', '/api/me') : null))
      .catch(() => {})
      .finally(() => (session.meCheck = null));
  }
}

function onResourceEvent(event) {
  const outcome = receiveResourceEvent(state, event);
  if (!outcome) return;
  const gone = outcome.channelGone;
  if (gone) appToast(`#${gone.name} was deleted by ${gone.by}. You are now in #${gone.now}.`);
  app.renderMain();
  if (outcome.flash) flash(outcome.collection, outcome.id);
}

function onWorkspaceEvent(event) {
  const outcome = applyWorkspaceEvent(state, event);
  if (!outcome) return;
  if (outcome.deleted) {
    if (outcome.notice) showNotice(outcome.notice);
    if (outcome.current) selectWorkspace(pickWorkspace(state, null));
    else app.renderSidebar();
    return;
  }
  app.renderSidebar();
  if (outcome.current) app.renderMain();
}

async function onMemberAdded(event) {
  const wsId = addedMe(state, event);
  if (wsId) {
    // We joined a workspace: the stream restarts to include it; fetch it now for the list.
    try {
      const ws = await api('GET', wsPath(wsId));
      const isNew = joinedWorkspace(state, ws);
      app.renderSidebar();
      if (isNew) appToast(`${event.user?.name ?? 'Someone'} added you to “${ws.name}”.`);
      if (!state.wsId) selectWorkspace(ws.id);
    } catch {
      // Picked up by the refetch on reconnect.
    }
  }
  if (applyMemberAdded(state, event)) app.renderMain();
}

function onMemberRemoved(event) {
  const outcome = applyMemberRemoved(state, event);
  if (!outcome) return;
  if (outcome.kept) {
    if (outcome.self) app.renderSidebar();
    app.renderMain();
    if (outcome.notice) showNotice(outcome.notice);
    return;
  }
  showNotice(outcome.notice);
  if (outcome.current) selectWorkspace(pickWorkspace(state, null));
  else app.renderSidebar();
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/** Loads the workspace list; returns the log position it is consistent with (or null). */
async function loadWorkspaces() {
  const { json, position } = await api('GET', '/api/workspaces', undefined, { positioned: true });
  setWorkspaces(state, json.items);
  app.renderSidebar();
  return position;
}

/** Refetches the workspace list; switches away if the current one is gone. */
async function refreshWorkspaces({ reloadCurrent = false } = {}) {
  try {
    await loadWorkspaces();
  } catch {
    return;
  }
  if (!state.workspaces.has(state.wsId)) selectWorkspace(pickWorkspace(state, null));
  else if (reloadCurrent) loadWorkspaceData(state.wsId);
  else app.renderMain();
}

function selectWorkspace(wsId) {
  switchWorkspace(state, wsId);
  if (wsId) app.remember('ws', wsId);
  closeSidebar();
  render();
  if (wsId) loadWorkspaceData(wsId);
}

async function loadWorkspaceData(wsId) {
  const seq = ++session.loadSeq;
  startLoad(state);
  app.renderMain();
  try {
    const base = wsPath(wsId);
    const [todos, channels, notes, members, presence] = await Promise.all([
      listAll(api, `${base}/todos`),
      listAll(api, `${base}/channels`),
      listAll(api, `${base}/notes`),
      api('GET', `${base}/members`).then((res) => res.items ?? []),
      api('GET', `${base}/presence`).then((res) => res.items ?? []),
    ]);
    if (seq !== session.loadSeq) return;
    finishLoad(state, { todos, channels, notes, members, presence }, app.recall(`channel:${wsId}`));
  } catch (err) {
    if (seq !== session.loadSeq) return;
    if (err.status === 404) {
      // Gone, or no longer ours.
      state.workspaces.delete(wsId);
      state.loading = false;
      selectWorkspace(pickWorkspace(state, null));
      return;
    }
    if (err.status !== 401) appToast(`Could not load the workspace: ${err.message}`, 'error');
  } finally {
    if (seq === session.loadSeq) endLoad(state);
  }
  render();
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

async function boot() {
  bindLogin(app);
  bindSidebar(app);
  bindWorkspace(app);
  bindTodos(app);
  bindChannels(app);
  bindNotes(app);
  bindMembers(app);
  $('.notice-close').addEventListener('click', hideNotice);
  // Relative times ("5 minutes ago") stay roughly right.
  setInterval(() => state.me && !state.loading && app.renderMain(), 60_000);

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
