// The web app's widgets: the inline editor, the two-step confirm button, toasts, the notice
// bar and the flash of an item someone else changed.

import { $, byTestId, h } from './dom.js';

/**
 * Replaces `textEl` by an input (or textarea) holding `value`. Enter (Ctrl+Enter for a
 * textarea) or leaving the field saves through `onSave` (which returns true when saved);
 * Escape cancels.
 */
export function inlineEdit(textEl, { value, multiline = false, testid, maxLength, host, onSave, onDone }) {
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
export function confirmThen(button, action) {
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

export function resetConfirm(button) {
  clearTimeout(button._confirmTimer);
  if (!button.dataset.confirming) return;
  delete button.dataset.confirming;
  button.classList.remove('confirming');
  button.textContent = button.dataset.label || 'Delete';
}

/** A toast for a notification or an announcement (data-testid="toast"). */
export function notificationToast({ kind, title, text, from }) {
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
export function appToast(text, kind = 'info') {
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

export function clearToasts() {
  $('#toasts').replaceChildren();
}

export function showNotice(text) {
  const notice = byTestId('notice');
  $('.notice-text', notice).textContent = text;
  notice.hidden = false;
}

export function hideNotice() {
  byTestId('notice').hidden = true;
}

/** Briefly highlights the item `id` of `collection`'s list. */
export function flash(collection, id) {
  const list = byTestId({ todos: 'todo-list', channels: 'channel-list', notes: 'note-list' }[collection]);
  const el = list && [...list.children].find((child) => child.dataset.key === id);
  if (!el) return;
  el.classList.remove('flash');
  void el.offsetWidth; // restart the animation
  el.classList.add('flash');
}
