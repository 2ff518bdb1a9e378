// What the web app remembers per user in localStorage: the last workspace, tab and channel.

const key = (userId, what) => `herald:${userId}:${what}`;

export function remember(userId, what, value) {
  try {
    localStorage.setItem(key(userId, what), value);
  } catch {
    // Storage may be unavailable (private mode); not important.
  }
}

export function recall(userId, what) {
  try {
    return localStorage.getItem(key(userId, what));
  } catch {
    return null;
  }
}
