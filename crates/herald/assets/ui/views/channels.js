// The channels tab: the list, the selected channel's detail, creating, renaming and deleting
// a channel.

import { wsPath } from '../api.js';
import { $, byTestId, h, reconcile, relativeTime } from '../dom.js';
import { defaultChannel, memberName, upsert } from '../state.js';
import { appToast, confirmThen, resetConfirm } from '../widgets.js';

export function renderChannels(app) {
  const { state } = app;
  const channels = [...state.channels.values()].sort(
    (a, b) => Number(b.isDefault) - Number(a.isDefault) || a.name.localeCompare(b.name),
  );
  reconcile(
    byTestId('channel-list'),
    channels,
    (c) => c.id,
    (channel) =>
      h(
        'li',
        { testid: 'channel-item', class: 'channel-item' },
        h(
          'button',
          {
            type: 'button',
            class: 'channel-button',
            onclick: () => {
              state.channelId = channel.id;
              app.remember(`channel:${state.wsId}`, channel.id);
              renderChannels(app);
            },
          },
          h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
          h('span', { class: 'channel-name' }),
        ),
      ),
    (el, channel) => {
      const selected = channel.id === state.channelId;
      el.classList.toggle('selected', selected);
      el.dataset.channelId = channel.id;
      if (selected) el.setAttribute('aria-current', 'true');
      else el.removeAttribute('aria-current');
      $('.channel-name', el).textContent = channel.name;
    },
  );
  $('#channel-empty').hidden = state.loading || channels.length > 0;

  const channel = state.channels.get(state.channelId);
  const detail = $('#channel-detail');
  detail.hidden = !channel;
  if (!channel) return;
  if (detail.dataset.channelId !== channel.id) {
    detail.dataset.channelId = channel.id;
    $('#channel-rename-form').hidden = true;
    resetConfirm(byTestId('channel-delete'));
  }
  byTestId('selected-channel').textContent = channel.name;
  byTestId('selected-channel').hidden = !$('#channel-rename-form').hidden;
  $('#channel-default').hidden = !channel.isDefault;
  $('#channel-meta').textContent = `Created by ${memberName(state, channel.createdBy)} · ${relativeTime(channel.createdAt)}`;
  byTestId('channel-delete').hidden = !!channel.isDefault;
}

/** Binds the forms and buttons of the channels tab. */
export function bindChannels(app) {
  $('#channel-form').addEventListener('submit', (event) => addChannel(app, event));
  byTestId('channel-rename').addEventListener('click', () => startRename(app));
  $('#channel-rename-form').addEventListener('submit', (event) => saveRename(app, event));
  byTestId('channel-rename-cancel').addEventListener('click', () => cancelRename(app));
  byTestId('channel-delete').addEventListener('click', (e) => confirmThen(e.currentTarget, () => deleteChannel(app)));
}

async function addChannel(app, event) {
  event.preventDefault();
  const { state } = app;
  const input = byTestId('channel-input');
  const name = input.value.trim().replace(/^#/, '');
  if (!name || !state.wsId) return;
  const wsId = state.wsId;
  try {
    const channel = await app.api('POST', `${wsPath(wsId)}/channels`, { name });
    input.value = '';
    if (wsId === state.wsId) {
      upsert(state.channels, channel);
      state.channelId = channel.id;
      app.remember(`channel:${wsId}`, channel.id);
      app.renderMain();
    }
  } catch (err) {
    appToast(`Could not create the channel: ${err.message}`, 'error');
  }
}

function startRename(app) {
  const channel = app.state.channels.get(app.state.channelId);
  if (!channel) return;
  const form = $('#channel-rename-form');
  form.hidden = false;
  byTestId('selected-channel').hidden = true;
  const input = byTestId('channel-rename-input');
  input.value = channel.name;
  input.focus();
  input.select();
}

async function saveRename(app, event) {
  event.preventDefault();
  const { state } = app;
  const channel = state.channels.get(state.channelId);
  const name = byTestId('channel-rename-input').value.trim().replace(/^#/, '');
  if (!channel) return;
  if (!name || name === channel.name) return cancelRename(app);
  const wsId = state.wsId;
  try {
    const saved = await app.api('PATCH', `${wsPath(wsId)}/channels/${channel.id}`, { name });
    if (wsId === state.wsId && state.channels.has(saved.id)) upsert(state.channels, saved);
    cancelRename(app);
  } catch (err) {
    appToast(`Could not rename the channel: ${err.message}`, 'error');
  }
}

function cancelRename(app) {
  $('#channel-rename-form').hidden = true;
  app.renderMain();
}

async function deleteChannel(app) {
  const { state } = app;
  const channel = state.channels.get(state.channelId);
  if (!channel || channel.isDefault) return;
  const wsId = state.wsId;
  try {
    await app.api('DELETE', `${wsPath(wsId)}/channels/${channel.id}`);
    if (wsId === state.wsId) {
      state.channels.delete(channel.id);
      state.channelId = defaultChannel(state)?.id ?? null;
      app.renderMain();
    }
  } catch (err) {
    appToast(`Could not delete the channel: ${err.message}`, 'error');
  }
}
