// The todos tab: the list, adding, ticking, renaming and deleting a todo.

import { wsPath } from '../api.js';
import { $, byTestId, h, reconcile, relativeTime } from '../dom.js';
import { byCreated, memberName, upsert } from '../state.js';
import { appToast, inlineEdit } from '../widgets.js';

export function renderTodos(app) {
  const { state } = app;
  const todos = [...state.todos.values()].sort(byCreated);
  const list = byTestId('todo-list');
  reconcile(
    list,
    todos,
    (t) => t.id,
    () => createItem(app),
    (li, todo) => updateItem(app, li, todo),
  );
  const open = todos.filter((t) => !t.done).length;
  $('#todo-empty').hidden = state.loading || todos.length > 0;
  $('#todo-summary').textContent = todos.length ? `${open} open · ${todos.length - open} done` : '';
}

/** Binds the form that adds a todo. */
export function bindTodos(app) {
  $('#todo-form').addEventListener('submit', (event) => addTodo(app, event));
}

function createItem(app) {
  const li = h('li', { testid: 'todo-item', class: 'item todo-item' });
  const toggle = h('input', {
    type: 'checkbox',
    testid: 'todo-toggle',
    class: 'check',
    'aria-label': 'Done',
    onchange: () => toggleTodo(app, li.dataset.key, toggle.checked),
  });
  const title = h('span', {
    testid: 'todo-title',
    class: 'item-title',
    title: 'Double-click to rename',
    ondblclick: () => editTodo(app, li),
  });
  li.append(
    toggle,
    h('div', { class: 'item-body' }, title, h('span', { class: 'item-meta' })),
    h(
      'div',
      { class: 'item-actions' },
      h('button', { type: 'button', class: 'ghost small', testid: 'todo-edit', text: 'Rename', onclick: () => editTodo(app, li) }),
      h('button', {
        type: 'button',
        class: 'ghost small danger',
        testid: 'todo-delete',
        text: 'Delete',
        'aria-label': 'Delete todo',
        onclick: () => deleteTodo(app, li.dataset.key),
      }),
    ),
  );
  return li;
}

function updateItem(app, li, todo) {
  li.classList.toggle('done', !!todo.done);
  byTestId('todo-toggle', li).checked = !!todo.done;
  if (!li.dataset.editing) byTestId('todo-title', li).textContent = todo.title;
  $('.item-meta', li).textContent = `${memberName(app.state, todo.createdBy)} · ${relativeTime(todo.createdAt)}`;
  $('.item-meta', li).title = new Date(todo.updatedAt || todo.createdAt).toLocaleString();
}

async function addTodo(app, event) {
  event.preventDefault();
  const { state } = app;
  const input = byTestId('todo-input');
  const title = input.value.trim();
  if (!title || !state.wsId) return;
  const wsId = state.wsId;
  const button = byTestId('todo-add');
  button.disabled = true;
  try {
    const todo = await app.api('POST', `${wsPath(wsId)}/todos`, { title });
    input.value = '';
    if (wsId === state.wsId && !state.loading) {
      upsert(state.todos, todo);
      app.renderMain();
    }
  } catch (err) {
    appToast(`Could not add the todo: ${err.message}`, 'error');
  } finally {
    button.disabled = false;
    input.focus();
  }
}

async function toggleTodo(app, id, done) {
  const { state } = app;
  const todo = state.todos.get(id);
  if (!todo) return;
  const wsId = state.wsId;
  state.todos.set(id, { ...todo, done }); // optimistic
  app.renderMain();
  try {
    const saved = await app.api('PATCH', `${wsPath(wsId)}/todos/${id}`, { done });
    if (wsId === state.wsId && state.todos.has(id)) upsert(state.todos, saved);
  } catch (err) {
    if (wsId === state.wsId && state.todos.has(id)) state.todos.set(id, todo);
    appToast(`Could not update the todo: ${err.message}`, 'error');
  }
  app.renderMain();
}

function editTodo(app, li) {
  const { state } = app;
  const id = li.dataset.key;
  const todo = state.todos.get(id);
  if (!todo || li.dataset.editing) return;
  inlineEdit(byTestId('todo-title', li), {
    value: todo.title,
    testid: 'todo-edit-input',
    maxLength: 500,
    host: li,
    onSave: async (value) => {
      if (value === todo.title) return true;
      const wsId = state.wsId;
      try {
        const saved = await app.api('PATCH', `${wsPath(wsId)}/todos/${id}`, { title: value });
        if (wsId === state.wsId && state.todos.has(id)) upsert(state.todos, saved);
        return true;
      } catch (err) {
        appToast(`Could not rename the todo: ${err.message}`, 'error');
        return false;
      }
    },
    onDone: () => app.renderMain(),
  });
}

async function deleteTodo(app, id) {
  const { state } = app;
  const todo = state.todos.get(id);
  if (!todo) return;
  const wsId = state.wsId;
  state.todos.delete(id); // optimistic
  app.renderMain();
  try {
    await app.api('DELETE', `${wsPath(wsId)}/todos/${id}`);
  } catch (err) {
    if (err.status !== 404 && wsId === state.wsId) {
      state.todos.set(id, todo);
      app.renderMain();
    }
    if (err.status !== 404) appToast(`Could not delete the todo: ${err.message}`, 'error');
  }
}
