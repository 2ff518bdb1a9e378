// The notes tab: my private notes, adding, editing and deleting one.

import { wsPath } from '../api.js';
import { $, byTestId, h, reconcile, relativeTime } from '../dom.js';
import { byCreated, upsert } from '../state.js';
import { appToast, inlineEdit } from '../widgets.js';

export function renderNotes(app) {
  const { state } = app;
  const notes = [...state.notes.values()].sort(byCreated);
  reconcile(
    byTestId('note-list'),
    notes,
    (n) => n.id,
    () => {
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
            h('button', { type: 'button', class: 'ghost small', testid: 'note-edit', text: 'Edit', onclick: () => editNote(app, li) }),
            h('button', {
              type: 'button',
              class: 'ghost small danger',
              testid: 'note-delete',
              text: 'Delete',
              onclick: () => deleteNote(app, li.dataset.key),
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

/** Binds the form that adds a note (Ctrl+Enter submits too). */
export function bindNotes(app) {
  $('#note-form').addEventListener('submit', (event) => addNote(app, event));
  byTestId('note-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) addNote(app, e);
  });
}

async function addNote(app, event) {
  event.preventDefault();
  const { state } = app;
  const input = byTestId('note-input');
  const content = input.value.trim();
  if (!content || !state.wsId) return;
  const wsId = state.wsId;
  try {
    const note = await app.api('POST', `${wsPath(wsId)}/notes`, { content });
    input.value = '';
    if (wsId === state.wsId && !state.loading) {
      upsert(state.notes, note);
      app.renderMain();
    }
  } catch (err) {
    appToast(`Could not save the note: ${err.message}`, 'error');
  }
}

function editNote(app, li) {
  const { state } = app;
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
        const saved = await app.api('PATCH', `${wsPath(wsId)}/notes/${id}`, { content: value });
        if (wsId === state.wsId && state.notes.has(id)) upsert(state.notes, saved);
        return true;
      } catch (err) {
        appToast(`Could not save the note: ${err.message}`, 'error');
        return false;
      }
    },
    onDone: () => app.renderMain(),
  });
}

async function deleteNote(app, id) {
  const { state } = app;
  const note = state.notes.get(id);
  if (!note) return;
  const wsId = state.wsId;
  state.notes.delete(id);
  app.renderMain();
  try {
    await app.api('DELETE', `${wsPath(wsId)}/notes/${id}`);
  } catch (err) {
    if (err.status !== 404 && wsId === state.wsId) {
      state.notes.set(id, note);
      app.renderMain();
    }
    if (err.status !== 404) appToast(`Could not delete the note: ${err.message}`, 'error');
  }
}
