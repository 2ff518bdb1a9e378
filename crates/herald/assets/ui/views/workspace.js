// The workspace view: its header (name, role, renaming, deleting), its tabs and their counts,
// and the panel of each tab.

import { wsPath } from '../api.js';
import { $, byTestId, h, reconcile } from '../dom.js';
import { TABS, canManage, currentWs, onlineUsers, pickWorkspace } from '../state.js';
import { appToast, confirmThen } from '../widgets.js';
import { renderChannels } from './channels.js';
import { renderMembers } from './members.js';
import { renderNotes } from './notes.js';
import { renderTodos } from './todos.js';

export function renderMain(app) {
  const { state } = app;
  const ws = currentWs(state);
  $('#empty-state').hidden = !!ws;
  $('#workspace-view').hidden = !ws;
  if (!ws) {
    // Nothing of a workspace we left may linger in the (hidden) DOM.
    for (const id of ['todo-list', 'channel-list', 'note-list', 'member-list', 'online-list']) byTestId(id).replaceChildren();
    return;
  }

  byTestId('workspace-name').textContent = ws.name;
  if (!$('#ws-rename-form').hidden && $('#ws-rename-form').dataset.wsId !== ws.id) $('#ws-rename-form').hidden = true;
  byTestId('workspace-name').hidden = !$('#ws-rename-form').hidden;
  const role = ws.role ?? (state.me.role === 'admin' ? 'admin' : '');
  $('#ws-role').textContent = role;
  $('#ws-role').hidden = !role;
  $('#ws-meta').textContent = `${state.members.size || '…'} member${state.members.size === 1 ? '' : 's'}`;
  $('#ws-actions').hidden = !canManage(state, ws);
  reconcile(
    byTestId('online-list'),
    onlineUsers(state),
    (user) => user.userId,
    () => h('span', { testid: 'online-user', class: 'online-user' }),
    (span, user) => {
      span.dataset.userId = user.userId;
      span.title = user.name;
      span.textContent = user.userId === state.me.id ? `${user.name} (you)` : user.name;
    },
  );
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

  renderTodos(app);
  renderChannels(app);
  renderNotes(app);
  renderMembers(app);
}

/** Binds the header's rename and delete controls and the tabs. */
export function bindWorkspace(app) {
  byTestId('workspace-rename').addEventListener('click', () => startRename(app));
  $('#ws-rename-form').addEventListener('submit', (event) => saveRename(app, event));
  byTestId('workspace-rename-cancel').addEventListener('click', () => cancelRename(app));
  byTestId('workspace-delete').addEventListener('click', (e) => confirmThen(e.currentTarget, () => deleteWorkspace(app)));
  const tabs = TABS.map((tab) => byTestId(`tab-${tab}`));
  tabs.forEach((button, i) => {
    button.addEventListener('click', () => selectTab(app, TABS[i]));
    button.addEventListener('keydown', (e) => {
      const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!step) return;
      const next = (i + step + TABS.length) % TABS.length;
      selectTab(app, TABS[next]);
      tabs[next].focus();
    });
  });
}

function selectTab(app, tab) {
  app.state.tab = tab;
  app.remember('tab', tab);
  app.renderMain();
}

function startRename(app) {
  const ws = currentWs(app.state);
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

async function saveRename(app, event) {
  event.preventDefault();
  const ws = currentWs(app.state);
  const name = byTestId('workspace-rename-input').value.trim();
  if (!ws) return;
  if (!name || name === ws.name) return cancelRename(app);
  try {
    const saved = await app.api('PATCH', wsPath(ws.id), { name });
    app.state.workspaces.set(ws.id, { ...ws, ...saved, role: saved.role ?? ws.role });
    cancelRename(app);
    app.renderSidebar();
  } catch (err) {
    appToast(`Could not rename the workspace: ${err.message}`, 'error');
  }
}

function cancelRename(app) {
  $('#ws-rename-form').hidden = true;
  app.renderMain();
}

async function deleteWorkspace(app) {
  const { state } = app;
  const ws = currentWs(state);
  if (!ws) return;
  try {
    await app.api('DELETE', wsPath(ws.id));
    state.workspaces.delete(ws.id);
    app.selectWorkspace(pickWorkspace(state, null));
  } catch (err) {
    appToast(`Could not delete the workspace: ${err.message}`, 'error');
  }
}
