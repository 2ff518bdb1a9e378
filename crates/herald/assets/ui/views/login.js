// The sign-in view, and switching between it, the boot screen and the app.

import { $, byTestId } from '../dom.js';

const VIEWS = { boot: '#boot-view', login: '#login-view', app: '#app-view' };

/** Shows one of `boot`, `login` and `app`. */
export function showView(name) {
  for (const [key, selector] of Object.entries(VIEWS)) $(selector).hidden = key !== name;
}

/** Shows the sign-in form, with `message` (e.g. why the session ended) if any. */
export function showLogin(message = '') {
  showView('login');
  const error = byTestId('login-error');
  error.textContent = message;
  error.hidden = !message;
  error.classList.toggle('info', !!message);
  byTestId('login-password').value = '';
  byTestId('login-email').focus();
}

/** Binds the sign-in form and the sign-out button. */
export function bindLogin(app) {
  $('#login-form').addEventListener('submit', (event) => onLoginSubmit(app, event));
  byTestId('logout').addEventListener('click', () => onLogout(app));
}

async function onLoginSubmit(app, event) {
  event.preventDefault();
  const email = byTestId('login-email').value.trim();
  const password = byTestId('login-password').value;
  const error = byTestId('login-error');
  const submit = byTestId('login-submit');
  error.hidden = true;
  error.classList.remove('info');
  if (!email || !password) {
    error.textContent = 'Enter your email and password.';
    error.hidden = false;
    return;
  }
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  try {
    await app.api('POST', '/api/login', { email, password }, { signOutOn401: false });
    app.state.me = await app.api('GET', '/api/me', undefined, { signOutOn401: false });
    byTestId('login-password').value = '';
    await app.enterApp();
  } catch (err) {
    error.textContent =
      err.status === 401 ? 'Wrong email or password.' : err.message || 'Could not sign in. Try again.';
    error.hidden = false;
  } finally {
    submit.disabled = false;
    submit.textContent = 'Sign in';
  }
}

async function onLogout(app) {
  try {
    await app.api('POST', '/api/logout', undefined, { signOutOn401: false });
  } catch {
    // Signed out locally either way.
  }
  app.signedOut('');
}
