// The sidebar: the list of workspaces, creating one, and opening and closing it on a narrow
// screen.

import { $, byTestId, h, initials, reconcile } from '../dom.js';
import { sortedWorkspaces } from '../state.js';
import { appToast } from '../widgets.js';

export function renderSidebar(app) {
  const { state } = app;
  const list = byTestId('workspace-list');
  const items = sortedWorkspaces(state);
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
          { type: 'button', class: 'ws-button', onclick: () => app.selectWorkspace(ws.id) },
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

export function openSidebar() {
  document.body.classList.add('sidebar-open');
  byTestId('sidebar-toggle').setAttribute('aria-expanded', 'true');
}

export function closeSidebar() {
  document.body.classList.remove('sidebar-open');
  byTestId('sidebar-toggle')?.setAttribute('aria-expanded', 'false');
}

/** Binds the sidebar's toggle and the workspace creation form. */
export function bindSidebar(app) {
  byTestId('sidebar-toggle').addEventListener('click', () =>
    document.body.classList.contains('sidebar-open') ? closeSidebar() : openSidebar(),
  );
  $('#scrim').addEventListener('click', closeSidebar);
  $('#ws-create-form').addEventListener('submit', (event) => createWorkspace(app, event));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeSidebar();
  });
}

async function createWorkspace(app, event) {
  event.preventDefault();
  const input = byTestId('workspace-create-input');
  const name = input.value.trim();
  if (!name) return;
  try {
    const ws = await app.api('POST', '/api/workspaces', { name });
    input.value = '';
    app.state.workspaces.set(ws.id, ws);
    app.selectWorkspace(ws.id);
  } catch (err) {
    appToast(`Could not create the workspace: ${err.message}`, 'error');
  }
}
