// The members tab: the members of the workspace, adding one (with a picker of every user)
// and removing one, or leaving.

import { wsPath } from '../api.js';
import { $, byTestId, h, initials, reconcile } from '../dom.js';
import { canManage, currentWs } from '../state.js';
import { appToast, confirmThen } from '../widgets.js';

export function renderMembers(app) {
  const { state } = app;
  const ws = currentWs(state);
  if (!ws) return;
  const manage = canManage(state, ws);
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
          onclick: (e) => confirmThen(e.currentTarget, () => removeMember(app, member.userId)),
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
    loadUsers(app);
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

/** Binds the form that adds a member. */
export function bindMembers(app) {
  $('#member-add-form').addEventListener('submit', (event) => addMember(app, event));
}

/** Loads every user, for the member picker. */
async function loadUsers(app) {
  try {
    const res = await app.api('GET', '/api/users');
    app.state.users = res.items ?? [];
  } catch (err) {
    app.state.users = [];
    if (err.status !== 401) appToast(`Could not load users: ${err.message}`, 'error');
  }
  renderMembers(app);
}

async function addMember(app, event) {
  event.preventDefault();
  const { state } = app;
  const userId = byTestId('member-user-select').value;
  const role = byTestId('member-role-select').value;
  if (!userId || !state.wsId) return;
  const wsId = state.wsId;
  try {
    const member = await app.api('POST', `${wsPath(wsId)}/members`, { userId, role });
    if (wsId === state.wsId) {
      state.members.set(member.userId, member);
      byTestId('member-user-select').value = '';
      app.renderMain();
    }
  } catch (err) {
    appToast(`Could not add the member: ${err.message}`, 'error');
  }
}

async function removeMember(app, userId) {
  const { state } = app;
  const wsId = state.wsId;
  try {
    await app.api('DELETE', `${wsPath(wsId)}/members/${userId}`);
    if (wsId === state.wsId && userId !== state.me.id) {
      state.members.delete(userId);
      app.renderMain();
    }
  } catch (err) {
    appToast(
      err.code === 'conflict' ? 'A workspace needs at least one owner.' : `Could not remove the member: ${err.message}`,
      'error',
    );
  }
}
