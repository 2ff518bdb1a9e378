// Small DOM helpers of the web app: element lookup, element creation, keyed list
// reconciliation, and the formatting of times and initials.
//
// All user text goes into the DOM through textContent / text nodes, never innerHTML.

/** The element with this data-testid (under `root`). */
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * Creates an element. `props`: `class`, `testid`, `text`, `dataset`, `on<event>` listeners,
 * DOM properties given as non-strings (`checked: true`), attributes otherwise. Children are
 * nodes or strings (strings become text nodes).
 */
export function h(tag, props = {}, ...children) {
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
export function reconcile(list, items, keyOf, create, update) {
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

/** "just now", "5 minutes ago", …, or the date. */
export const relativeTime = (() => {
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

/** Up to two initials of a name, for an avatar. */
export const initials = (name) =>
  (name || '?')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((part) => part[0].toUpperCase())
    .join('') || '?';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
