// The names of the stream events the web app listens to, defined once: the stream wiring
// subscribes to them and the state logic tells them apart by these constants.

/** The collections of a workspace that arrive as `<collection>:<action>` events. */
export const COLLECTIONS = Object.freeze(['todos', 'channels', 'notes']);

export const EVENTS = Object.freeze({
  /** The stream is live; its data lists the workspaces it covers. */
  connected: 'connected',
  /** Our position in the log is lost: reload what we show. */
  reset: 'reset',
  todoCreated: 'todos:created',
  todoUpdated: 'todos:updated',
  todoDeleted: 'todos:deleted',
  channelCreated: 'channels:created',
  channelUpdated: 'channels:updated',
  channelDeleted: 'channels:deleted',
  noteCreated: 'notes:created',
  noteUpdated: 'notes:updated',
  noteDeleted: 'notes:deleted',
  workspaceCreated: 'workspaces:created',
  workspaceUpdated: 'workspaces:updated',
  workspaceDeleted: 'workspaces:deleted',
  memberAdded: 'members:added',
  memberRemoved: 'members:removed',
  notification: 'notification',
  announcement: 'announcement',
  /** Someone's stream opened or closed in a workspace (its data is a subscription document). */
  presence: 'presence',
});

/** Every `<collection>:<action>` event of [`COLLECTIONS`]. */
export const RESOURCE_EVENTS = Object.freeze([
  EVENTS.todoCreated,
  EVENTS.todoUpdated,
  EVENTS.todoDeleted,
  EVENTS.channelCreated,
  EVENTS.channelUpdated,
  EVENTS.channelDeleted,
  EVENTS.noteCreated,
  EVENTS.noteUpdated,
  EVENTS.noteDeleted,
]);

/** The workspace events. */
export const WORKSPACE_EVENTS = Object.freeze([EVENTS.workspaceCreated, EVENTS.workspaceUpdated, EVENTS.workspaceDeleted]);
