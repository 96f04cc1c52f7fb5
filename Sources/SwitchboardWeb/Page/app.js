// The chat page: sign in, the room list, the room view, the connection indicator.
import { Api, Connection, Outbox, isMissingRoute } from './connection.js';
import { byId, clean, h, reducedMotion, time } from './dom.js';

const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉'];
const PAGE = 50;
const SESSION_KEY = 'switchboard.session';

const state = {
  api: new Api(),
  me: null,
  connection: null,
  outbox: null,
  users: new Map(),
  rooms: new Map(),
  online: new Set(),
  openRoomId: null,
  timeline: null,
  typing: new Map(),
  replyTo: null,
  myReactions: new Set(),
  typingSentAt: 0,
  queue: Promise.resolve(),
};

// MARK: Alerts and the connection indicator

function showError(error) {
  const alert = byId('alert');
  alert.replaceChildren(
    h('span', {}, error instanceof Error ? `${error.message}.` : String(error)),
    dismissButton(),
  );
}

function dismissButton() {
  const button = h('button', { type: 'button', class: 'dismiss' }, 'Dismiss');
  button.addEventListener('click', () => byId('alert').replaceChildren());
  return button;
}

function waitingText() {
  const count = state.outbox?.items.length ?? 0;
  return count === 0 ? '' : `${count} message${count === 1 ? '' : 's'} waiting`;
}

function renderConnection() {
  const status = state.connection?.status ?? { state: 'offline' };
  const waiting = waitingText();
  let text;
  let shown = status.state;
  if (!navigator.onLine && status.state !== 'connected') {
    shown = 'offline';
    text = waiting ? `Offline with ${waiting}` : 'Offline';
  } else if (status.state === 'connected') {
    text = 'Connected';
  } else if (status.state === 'polling') {
    text = 'Connected (polling fallback)';
  } else if (status.state === 'reconnecting') {
    const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
    text = `Reconnecting in ${seconds} s (attempt ${status.attempt})`;
  } else if (status.state === 'connecting') {
    text = 'Connecting…';
  } else {
    text = 'Not connected';
  }
  if (waiting && shown !== 'offline') text += ` · ${waiting}`;
  const element = byId('connection');
  element.dataset.state = shown;
  byId('connection-text').textContent = text;
  // The live region hears of changes of state and of the waiting count, not of each second.
  const announced = text.replace(/in \d+ s /, '');
  if (byId('connection-status').textContent !== announced) byId('connection-status').textContent = announced;
}

setInterval(() => { if (state.connection?.status.state === 'reconnecting') renderConnection(); }, 500);
addEventListener('online', renderConnection);
addEventListener('offline', renderConnection);

// MARK: Users

function rememberUser(user) {
  if (!user?.id) return;
  state.users.set(user.id, user);
  for (const element of document.querySelectorAll(`[data-user="${CSS.escape(user.id)}"]`)) {
    element.textContent = clean(user.displayName);
    // A name drawn before its user was known gets its bot mark now.
    if (user.isBot && element.dataset.badge !== 'none' && !element.nextElementSibling?.classList.contains('bot')) element.after(botBadge());
  }
}

function userName(id) {
  return clean(state.users.get(id)?.displayName ?? 'someone');
}

const usersAsked = new Set();
let userRouteMissing = false;

/** Learns an unknown user: `GET /api/users/{id}` (1.1), or the user list on an older server. */
async function learnUser(id) {
  if (!id || state.users.has(id) || usersAsked.has(id)) return;
  usersAsked.add(id);
  if (!userRouteMissing) {
    try {
      return rememberUser((await state.api.get(`/api/users/${encodeURIComponent(id)}`)).user);
    } catch (error) {
      if (!isMissingRoute(error)) return;
      userRouteMissing = true;
    }
  }
  const { users } = await state.api.get('/api/users?query=').catch(() => ({ users: [] }));
  users.forEach(rememberUser);
}

// MARK: Sign in

function loadSession() {
  try { return JSON.parse(localStorage.getItem(SESSION_KEY)); } catch { return null; }
}

async function signIn(path, body) {
  const answer = await new Api().post(path, body);
  localStorage.setItem(SESSION_KEY, JSON.stringify({ token: answer.token, user: answer.user }));
  await start(answer.token, answer.user);
}

function setupSignIn() {
  const form = byId('sign-in-form');
  const fields = () => ({ username: byId('username').value.trim(), password: byId('password').value });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await signIn('/api/login', fields()).catch(showError);
  });
  byId('register').addEventListener('click', async () => {
    const body = fields();
    const displayName = byId('display-name').value.trim();
    if (displayName) body.displayName = displayName;
    await signIn('/api/register', body).catch(showError);
  });
  byId('sign-out').addEventListener('click', async () => {
    // Signing out on purpose leaves nothing of the user in this browser (a shared computer):
    // not the text of unsent messages, nor the reactions (an expired session keeps them). The
    // connection stops first: the server closes it when the token goes, which would reload the
    // page before this is done.
    state.connection?.stop();
    localStorage.removeItem(`switchboard.outbox.${state.me.id}`);
    localStorage.removeItem(reactionsKey());
    await state.api.post('/api/logout').catch(() => {});
    signOut();
  });
}

function signOut(message = null) {
  state.connection?.stop();
  localStorage.removeItem(SESSION_KEY);
  if (message) sessionStorage.setItem('switchboard.notice', message);
  history.replaceState(null, '', location.pathname);
  location.reload();
}

function showSignIn() {
  byId('sign-in-view').hidden = false;
  byId('chat-view').hidden = true;
  byId('account').hidden = true;
  const notice = sessionStorage.getItem('switchboard.notice');
  if (notice) { sessionStorage.removeItem('switchboard.notice'); showError(notice); }
  byId('username').focus();
}

// MARK: Start

async function start(token, user) {
  state.api.token = token;
  try {
    user = (await state.api.get('/api/me')).user;
  } catch (error) {
    if (error.code === 'unauthorized') { localStorage.removeItem(SESSION_KEY); return showSignIn(); }
    // Unreachable: start anyway with what was stored; the connection retries and the outbox waits.
  }
  state.me = user;
  rememberUser(user);
  try { state.myReactions = new Set(JSON.parse(localStorage.getItem(reactionsKey()) ?? '[]')); } catch { /* none */ }
  byId('sign-in-view').hidden = true;
  byId('chat-view').hidden = false;
  byId('account').hidden = false;
  byId('account-name').textContent = `Signed in as ${clean(user.displayName)}`;
  byId('alert').replaceChildren();

  const connection = new Connection(state.api);
  state.connection = connection;
  state.outbox = new Outbox(localStorage, `switchboard.outbox.${user.id}`, connection, state.api);
  connection.addEventListener('status', () => { renderConnection(); updateComposer(); });
  connection.addEventListener('event', (event) => enqueue(() => handleEvent(event.detail)));
  connection.addEventListener('open', (event) => enqueue(() => recover(event.detail.mode)));
  connection.addEventListener('joined', (event) => enqueue(() => joined(event.detail.roomId, event.detail.ack)));
  connection.addEventListener('unauthorized', () => signOut('The server ended this session: sign in again.'));
  state.outbox.addEventListener('change', () => { renderConnection(); renderPending(); });
  state.outbox.addEventListener('sent', (event) => enqueue(() => receiveMessage(event.detail.message)));
  state.outbox.addEventListener('failed', (event) => {
    showError(`Not sent: “${event.detail.item.content.slice(0, 40)}”: ${event.detail.error.message}`);
  });

  await refreshRooms().catch(() => {});
  state.api.get('/api/users?query=').then(({ users }) => users.forEach(rememberUser)).catch(() => {});
  renderConnection();
  connection.start();
  openRoomFromHash();
  if (!location.hash) (byId('room-list').querySelector('a') ?? byId('start-create').querySelector('summary')).focus();
}

/** Runs room work one piece at a time, so that history, replays and live events stay in `seq` order. */
function enqueue(work) {
  state.queue = state.queue.then(work).catch((error) => { if (error?.code !== 'offline') showError(error); });
  return state.queue;
}

/** After a (re)connection: the room list again, and the open room's missed messages. */
async function recover(mode) {
  await refreshRooms().catch(() => {});
  const timeline = state.timeline;
  if (!timeline) return;
  if (!timeline.loaded) return openRoom(timeline.roomId); // opened while the server was away
  loadPresence(timeline.roomId);
  // Over the WebSocket the join's `since` replays what was missed; polling starts from now, so read it over HTTP.
  if (mode === 'polling') await catchUp(timeline, Infinity);
}

// MARK: Rooms

async function refreshRooms() {
  const { rooms } = await state.api.get('/api/rooms');
  state.rooms = new Map(rooms.map((room) => [room.id, room]));
  for (const room of rooms) if (room.kind === 'direct') room.members.forEach(learnUser);
  renderRooms();
}

function roomName(room) {
  if (room.kind === 'direct') {
    const other = room.members.find((id) => id !== state.me.id) ?? state.me.id;
    return userName(other);
  }
  return clean(room.name);
}

function renderRooms() {
  const list = byId('room-list');
  const focusedRoom = document.activeElement?.closest?.('#room-list a')?.dataset.room;
  const rooms = [...state.rooms.values()].sort((a, b) =>
    (b.lastMessage?.createdAt ?? b.createdAt) - (a.lastMessage?.createdAt ?? a.createdAt));
  list.replaceChildren(...rooms.map((room) => {
    const last = room.lastMessage;
    const other = room.kind === 'direct' ? room.members.find((id) => id !== state.me.id) : null;
    const link = h('a', {
      href: `#room=${encodeURIComponent(room.id)}`, 'data-room': room.id,
      'aria-current': room.id === state.openRoomId ? 'page' : null,
    },
    h('span', { class: 'room-name' },
      other ? presenceDot(other) : h('span', { class: 'room-mark', 'aria-hidden': 'true' }, room.isPublic ? '#' : '🔒'),
      other ? h('span', { 'data-user': other }, roomName(room)) : roomName(room),
      room.isPublic || other ? null : h('span', { class: 'visually-hidden' }, ' (private)')),
    room.unread > 0 && room.id !== state.openRoomId
      ? h('span', { class: 'unread' }, String(room.unread), h('span', { class: 'visually-hidden' }, ' unread'))
      : null,
    h('span', { class: 'last' }, last ? `${authorName(last)}: ${clean(last.content)}` : 'No messages yet'));
    return h('li', {}, link);
  }));
  byId('no-rooms').hidden = rooms.length > 0;
  if (focusedRoom) list.querySelector(`a[data-room="${CSS.escape(focusedRoom)}"]`)?.focus();
}

function presenceDot(userId) {
  const online = userId === state.me.id || state.online.has(userId);
  return h('span', { class: `presence ${online ? 'online' : 'offline'}`, 'data-presence': userId, role: 'img', 'aria-label': online ? 'online' : 'offline' });
}

function updatePresence(userId, online) {
  if (online) state.online.add(userId); else state.online.delete(userId);
  for (const dot of document.querySelectorAll(`[data-presence="${CSS.escape(userId)}"]`)) {
    dot.className = `presence ${online ? 'online' : 'offline'}`;
    dot.setAttribute('aria-label', online ? 'online' : 'offline');
  }
}

function upsertRoom(room, lastMessage) {
  const known = state.rooms.get(room.id);
  if (!known) return refreshRooms();
  const isNew = lastMessage && lastMessage.seq > (known.lastMessage?.seq ?? 0);
  Object.assign(known, room);
  if (isNew) {
    known.lastMessage = lastMessage;
    if (lastMessage.userId !== state.me.id && room.id !== state.openRoomId) known.unread = (known.unread ?? 0) + 1;
  }
  renderRooms();
  if (room.id === state.openRoomId) renderRoomHead();
}

function setupStart() {
  byId('create-room-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = byId('room-name').value.trim();
    if (!name) return showError('A room needs a name');
    try {
      const { room } = await state.api.post('/api/rooms', { name, isPublic: byId('room-public').checked });
      byId('room-name').value = '';
      byId('start-create').open = false;
      await refreshRooms();
      location.hash = `room=${encodeURIComponent(room.id)}`;
    } catch (error) { showError(error); }
  });
  byId('user-search-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const results = byId('user-results');
    try {
      const { users } = await state.api.get(`/api/users?query=${encodeURIComponent(byId('user-query').value.trim())}`);
      users.forEach(rememberUser);
      const others = users.filter((user) => user.id !== state.me.id);
      results.replaceChildren(...(others.length ? others.map((user) => {
        const button = h('button', { type: 'button' }, `Message ${clean(user.displayName)}`);
        button.addEventListener('click', () => openDirect(user.id));
        return h('li', {}, presenceDot(user.id), h('span', {}, clean(user.displayName), ` @${clean(user.username)}`), user.isBot ? botBadge() : null, button);
      }) : [h('li', { class: 'hint' }, 'Nobody by that name.')]));
    } catch (error) { showError(error); }
  });
  byId('public-search-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const results = byId('public-results');
    try {
      const { rooms } = await state.api.get(`/api/rooms/public?query=${encodeURIComponent(byId('public-query').value.trim())}`);
      results.replaceChildren(...(rooms.length ? rooms.map((room) => {
        const member = room.members.includes(state.me.id);
        const button = h('button', { type: 'button' }, member ? `Open ${clean(room.name)}` : `Join ${clean(room.name)}`);
        button.addEventListener('click', () => joinPublic(room));
        return h('li', {}, h('span', {}, `# ${clean(room.name)}`), h('span', { class: 'hint' }, ` ${room.members.length} members`), button);
      }) : [h('li', { class: 'hint' }, 'No public room by that name.')]));
    } catch (error) {
      // Before 1.1, /api/rooms/public is read as the room "public", which does not exist.
      if (error.status === 404) results.replaceChildren(h('li', { class: 'hint' }, 'This server cannot search public rooms yet.'));
      else showError(error);
    }
  });
}

async function openDirect(userId) {
  try {
    const { room } = await state.api.post('/api/dms', { userId });
    byId('start-dm').open = false;
    await refreshRooms();
    location.hash = `room=${encodeURIComponent(room.id)}`;
  } catch (error) { showError(error); }
}

async function joinPublic(room) {
  try {
    if (!room.members.includes(state.me.id)) {
      await state.api.post(`/api/rooms/${encodeURIComponent(room.id)}/members`, { userId: state.me.id });
    }
    byId('start-public').open = false;
    await refreshRooms();
    location.hash = `room=${encodeURIComponent(room.id)}`;
  } catch (error) { showError(error); }
}

// MARK: The room view

function openRoomFromHash() {
  const match = /^#room=(.+)$/.exec(location.hash);
  const roomId = match ? decodeURIComponent(match[1]) : null;
  if (roomId !== state.openRoomId) enqueue(() => openRoom(roomId));
}

async function openRoom(roomId) {
  if (state.openRoomId) state.connection.unsubscribe(state.openRoomId);
  state.openRoomId = roomId;
  state.timeline = null;
  state.typing.clear();
  state.replyTo = null;
  byId('history').replaceChildren();
  byId('log').replaceChildren();
  byId('typing').textContent = '';
  byId('replying').hidden = true;
  document.body.classList.toggle('room-open', !!roomId);
  renderRooms();
  updateComposer();
  if (!roomId) { renderRoomHead(); return; }
  const timeline = { roomId, loaded: false, firstSeq: 0, lastSeq: 0, hasMore: false, messages: new Map(), loadingOlder: false };
  state.timeline = timeline;
  renderRoomHead();
  const page = await state.api.get(`/api/rooms/${encodeURIComponent(roomId)}/messages?limit=${PAGE}`);
  if (state.timeline !== timeline) return;
  timeline.loaded = true;
  const known = state.rooms.get(roomId);
  if (known) { known.unread = 0; renderRooms(); }
  timeline.hasMore = page.hasMore;
  timeline.firstSeq = page.messages[0]?.seq ?? 0;
  timeline.lastSeq = page.messages.at(-1)?.seq ?? known?.lastSeq ?? 0;
  byId('history').append(...page.messages.map((message) => messageElement(message, timeline)));
  byId('load-older').hidden = !timeline.hasMore;
  renderPending();
  scrollToEnd();
  activateLast();
  loadPresence(roomId);
  state.connection.subscribe(roomId, () => (state.timeline?.roomId === roomId ? state.timeline.lastSeq : undefined));
  byId('composer-input').focus();
}

/** The `ack` of a (re)join: the members online (1.1), and the missed messages when the replay was cut short. */
async function joined(roomId, ack) {
  for (const userId of ack.online ?? []) updatePresence(userId, true);
  const timeline = state.timeline;
  if (ack.truncated && timeline?.roomId === roomId) await catchUp(timeline, ack.lastSeq);
}

async function loadPresence(roomId) {
  try {
    const { online, typing } = await state.api.get(`/api/rooms/${encodeURIComponent(roomId)}/presence`);
    online.forEach((id) => updatePresence(id, true));
    for (const id of typing) if (id !== state.me.id) setTyping(id, true);
  } catch { /* an older server: presence arrives with events */ }
}

function renderRoomHead() {
  const room = state.rooms.get(state.openRoomId);
  byId('room-title').textContent = room ? roomName(room) : state.openRoomId ? 'Room' : 'No room open';
  const members = byId('members');
  members.replaceChildren(...(room?.members ?? []).map((id) => {
    learnUser(id);
    const user = state.users.get(id);
    return h('li', {}, presenceDot(id), h('span', { 'data-user': id }, userName(id)), user?.isBot ? botBadge() : null);
  }));
}

function botBadge() {
  return h('span', { class: 'badge bot', title: 'a bot' }, 'bot');
}

/** The name a message shows: the author's, or for a message relayed by a bridge the sender's on the other network. */
// A bridge's nick is whatever its sender put in meta: the user who sent it is named too, so that
// no member can pass for another in a preview, a reply or a label.
function authorName(message) {
  const nick = message.meta?.bridge?.nick;
  return typeof nick === 'string' && nick ? `${clean(nick)} (via ${userName(message.userId)})` : userName(message.userId);
}

function messageElement(message, timeline) {
  timeline.messages.set(message.id, message);
  learnUser(message.userId);
  const bridge = message.meta?.bridge;
  const isBridged = typeof bridge?.nick === 'string' && bridge.nick !== '';
  const author = state.users.get(message.userId);
  const article = h('article', { class: `msg${message.userId === state.me.id ? ' mine' : ''}`, id: `m-${message.id}`, 'data-id': message.id, 'data-seq': message.seq, tabindex: '-1', 'aria-label': `${authorName(message)}: ${clean(message.content).slice(0, 80)}` },
    h('p', { class: 'meta' },
      isBridged
        ? [h('span', { class: 'author' }, clean(bridge.nick)),
          h('span', { class: 'badge bridge', title: `relayed by ${userName(message.userId)}${bridge.channel ? ` from ${clean(bridge.channel)}` : ''}` }, clean(bridge.network ?? 'bridge')),
          h('span', { class: 'via' }, 'via ', h('span', { 'data-user': message.userId, 'data-badge': 'none' }, userName(message.userId)))]
        : [h('span', { class: 'author', 'data-user': message.userId }, userName(message.userId)), author?.isBot ? botBadge() : null],
      ' ', time(message.createdAt)),
    message.replyTo ? replyQuote(message.replyTo, timeline) : null,
    h('p', { class: 'content' }, message.deleted ? 'This message was deleted.' : message.content),
    h('div', { class: 'reactions' }, reactionButtons(message)),
    messageActions(message));
  return article;
}

function replyQuote(messageId, timeline) {
  const original = timeline.messages.get(messageId);
  const text = original ? `${authorName(original)}: ${clean(original.content).slice(0, 80)}` : 'an earlier message';
  const link = h('a', { class: 'reply-quote', href: `#m-${messageId}`, tabindex: '-1' }, h('span', { 'aria-hidden': 'true' }, '↪ '), `Reply to ${text}`);
  link.addEventListener('click', (event) => {
    event.preventDefault();
    const target = byId(`m-${messageId}`);
    if (target) { target.scrollIntoView({ block: 'center', behavior: reducedMotion() ? 'auto' : 'smooth' }); setActive(target); target.focus(); }
  });
  return link;
}

function reactionButtons(message) {
  return Object.entries(message.reactions ?? {}).filter(([, count]) => count > 0).map(([emoji, count]) => {
    const mine = state.myReactions.has(`${message.id} ${emoji}`);
    const button = h('button', {
      type: 'button', class: 'reaction', tabindex: '-1', 'aria-pressed': mine ? 'true' : 'false',
      'aria-label': `${emoji} ${count}${mine ? ', yours: remove it' : ': add yours'}`,
    }, `${emoji} ${count}`);
    button.addEventListener('click', () => toggleReaction(message, emoji));
    return button;
  });
}

function messageActions(message) {
  const reply = h('button', { type: 'button', tabindex: '-1' }, 'Reply');
  reply.addEventListener('click', () => startReply(message));
  const quick = QUICK_REACTIONS.map((emoji) => {
    const button = h('button', { type: 'button', tabindex: '-1', 'aria-label': `React with ${emoji}` }, emoji);
    button.addEventListener('click', () => toggleReaction(message, emoji));
    return button;
  });
  return h('div', { class: 'actions' }, reply, ...quick);
}

function reactionsKey() { return `switchboard.reactions.${state.me.id}`; }

async function toggleReaction(message, emoji) {
  const key = `${message.id} ${emoji}`;
  const action = state.myReactions.has(key) ? 'remove' : 'add';
  try {
    const ack = await state.connection.request('reaction', message.roomId, { messageId: message.id, reaction: emoji, action });
    setMyReaction(key, action === 'add');
    applyReactions(message.id, ack.reactions);
  } catch (error) {
    showError(error.code === 'offline' ? 'Reactions need the live connection; try again once connected' : error);
  }
}

function setMyReaction(key, on) {
  if (on) state.myReactions.add(key); else state.myReactions.delete(key);
  localStorage.setItem(reactionsKey(), JSON.stringify([...state.myReactions].slice(-1000)));
}

function applyReactions(messageId, reactions) {
  const message = state.timeline?.messages.get(messageId);
  if (!message) return;
  message.reactions = reactions ?? {};
  const element = byId(`m-${messageId}`);
  const container = element?.querySelector('.reactions');
  if (!container) return;
  const active = element.classList.contains('active');
  container.replaceChildren(...reactionButtons(message));
  if (active) container.querySelectorAll('button').forEach((button) => button.setAttribute('tabindex', '0'));
}

// Keyboard: the timeline is one tab stop; ↑ and ↓ move between messages, Tab reaches the active one's buttons.
function setActive(article) {
  const previous = document.querySelector('.msg.active');
  if (previous === article) return;
  if (previous) {
    previous.classList.remove('active');
    previous.setAttribute('tabindex', '-1');
    previous.querySelectorAll('button, a').forEach((element) => element.setAttribute('tabindex', '-1'));
  }
  if (!article) return;
  article.classList.add('active');
  article.setAttribute('tabindex', '0');
  article.querySelectorAll('button, a').forEach((element) => element.setAttribute('tabindex', '0'));
}

function allMessages() { return [...document.querySelectorAll('#history .msg, #log .msg')]; }

/** The newest message becomes the timeline's tab stop, unless the focus is among the messages. */
function activateLast() {
  if (!document.querySelector('.msg.active') || !byId('timeline').contains(document.activeElement)) setActive(allMessages().at(-1) ?? null);
}

function setupTimelineKeys() {
  const timeline = byId('timeline');
  timeline.addEventListener('focusin', (event) => {
    const article = event.target.closest('.msg');
    if (article && !article.classList.contains('pending')) setActive(article);
  });
  timeline.addEventListener('keydown', (event) => {
    if (!['ArrowUp', 'ArrowDown', 'Home', 'End'].includes(event.key) || !event.target.classList.contains('msg')) return;
    const messages = allMessages();
    const index = messages.indexOf(event.target);
    const next = { ArrowUp: index - 1, ArrowDown: index + 1, Home: 0, End: messages.length - 1 }[event.key];
    event.preventDefault();
    if (next < 0 && state.timeline?.hasMore) { loadOlder(); return; }
    const target = messages[Math.max(0, Math.min(messages.length - 1, next))];
    if (target) { setActive(target); target.focus(); }
  });
  timeline.addEventListener('scroll', () => { if (timeline.scrollTop < 60) loadOlder(); });
  byId('load-older').addEventListener('click', () => loadOlder());
}

async function loadOlder() {
  const timeline = state.timeline;
  if (!timeline || !timeline.hasMore || timeline.loadingOlder) return;
  timeline.loadingOlder = true;
  try {
    const page = await state.api.get(`/api/rooms/${encodeURIComponent(timeline.roomId)}/messages?before=${timeline.firstSeq}&limit=${PAGE}`);
    if (state.timeline !== timeline) return;
    const scroller = byId('timeline');
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const fresh = page.messages.filter((message) => !timeline.messages.has(message.id));
    byId('history').prepend(...fresh.map((message) => messageElement(message, timeline)));
    timeline.firstSeq = page.messages[0]?.seq ?? timeline.firstSeq;
    timeline.hasMore = page.hasMore;
    byId('load-older').hidden = !timeline.hasMore;
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  } catch (error) { showError(error); } finally { timeline.loadingOlder = false; }
}

/** Reads the open room's messages above `lastSeq` over HTTP, up to `until`. */
async function catchUp(timeline, until) {
  while (state.timeline === timeline && timeline.lastSeq < until) {
    const before = Number.isFinite(until) ? `&before=${until + 1}` : '';
    const page = await state.api.get(`/api/rooms/${encodeURIComponent(timeline.roomId)}/messages?after=${timeline.lastSeq}${before}&limit=200`);
    if (state.timeline !== timeline) return;
    for (const message of page.messages) appendMessage(message, timeline);
    if (!page.hasMore || page.messages.length === 0) return;
  }
}

function nearBottom() {
  const scroller = byId('timeline');
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  const scroller = byId('timeline');
  scroller.scrollTo({ top: scroller.scrollHeight, behavior: 'auto' });
}

function appendMessage(message, timeline) {
  if (message.seq <= timeline.lastSeq || timeline.messages.has(message.id)) return;
  const stick = nearBottom();
  timeline.lastSeq = message.seq;
  byId('log').append(messageElement(message, timeline));
  activateLast();
  if (stick || message.userId === state.me.id) scrollToEnd();
}

/** A message from the server (live, replayed, polled or acked): the room list, and the open room's timeline. */
async function receiveMessage(message) {
  if (!message) return;
  // A new member's first message (before 1.1 no `member` event said so), or a room not yet listed.
  if (!state.rooms.get(message.roomId)?.members.includes(message.userId)) await refreshRooms().catch(() => {});
  const room = state.rooms.get(message.roomId);
  if (room) {
    upsertRoom({ ...room, lastSeq: Math.max(room.lastSeq ?? 0, message.seq) }, message);
  }
  const timeline = state.timeline;
  if (!timeline || timeline.roomId !== message.roomId || message.seq <= timeline.lastSeq) return;
  if (message.seq > timeline.lastSeq + 1) await catchUp(timeline, message.seq - 1);
  appendMessage(message, timeline);
  if (message.userId !== state.me.id) setTyping(message.userId, false);
}

async function handleEvent(envelope) {
  const data = envelope.data ?? {};
  switch (envelope.type) {
  case 'message': return receiveMessage(data);
  case 'room': return upsertRoom(data.room, data.lastMessage);
  case 'typing':
    if (envelope.roomId === state.openRoomId && envelope.userId !== state.me.id) setTyping(envelope.userId, data.isTyping);
    return;
  case 'reaction':
    if (envelope.userId === state.me.id) setMyReaction(`${data.messageId} ${data.reaction}`, data.action === 'add');
    return applyReactions(data.messageId, data.reactions);
  case 'presence': return updatePresence(envelope.userId, data.status === 'online');
  case 'join': {
    rememberUser(data.user);
    const room = state.rooms.get(envelope.roomId);
    // Joining is for members: one that the page did not know of (before 1.1's `member` events) is added.
    if (room && data.user && !room.members.includes(data.user.id)) {
      room.members.push(data.user.id);
      if (room.id === state.openRoomId) renderRoomHead();
    }
    return updatePresence(envelope.userId ?? data.user?.id, true);
  }
  case 'leave':
    return rememberUser(data.user);
  case 'member': return memberChanged(envelope.roomId, data);
  default: return undefined; // an event this page does not know: ignored, as the protocol asks
  }
}

function memberChanged(roomId, { user, change }) {
  rememberUser(user);
  const room = state.rooms.get(roomId);
  if (!room || !user) return refreshRooms();
  if (user.id === state.me.id && change === 'removed') {
    state.rooms.delete(roomId);
    if (state.openRoomId === roomId) { showError(`You are no longer a member of ${roomName(room)}`); location.hash = ''; }
    return renderRooms();
  }
  room.members = change === 'removed' ? room.members.filter((id) => id !== user.id) : [...new Set([...room.members, user.id])];
  if (roomId === state.openRoomId) renderRoomHead();
}

// MARK: Typing

function setTyping(userId, isTyping) {
  clearTimeout(state.typing.get(userId));
  if (isTyping) state.typing.set(userId, setTimeout(() => setTyping(userId, false), 7000));
  else state.typing.delete(userId);
  const names = [...state.typing.keys()].map(userName);
  byId('typing').textContent = names.length === 0 ? ''
    : names.length === 1 ? `${names[0]} is typing…`
      : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : `${names.length} people are typing…`;
}

function sendTyping(isTyping) {
  if (!state.openRoomId || !state.connection?.isWebSocket) return;
  const now = Date.now();
  if (isTyping && now - state.typingSentAt < 3000) return;
  if (!isTyping && state.typingSentAt === 0) return;
  state.typingSentAt = isTyping ? now : 0;
  state.connection.request('typing', state.openRoomId, { isTyping }).catch(() => {});
}

// MARK: Sending

function updateComposer() {
  const ready = !!state.openRoomId;
  byId('composer-input').disabled = !ready;
  byId('send').disabled = !ready;
}

function startReply(message) {
  state.replyTo = message;
  byId('replying').hidden = false;
  byId('replying-text').textContent = `Replying to ${authorName(message)}: ${clean(message.content).slice(0, 60)}`;
  byId('composer-input').focus();
}

function cancelReply() {
  state.replyTo = null;
  byId('replying').hidden = true;
}

function send() {
  const input = byId('composer-input');
  const content = input.value.trim();
  if (!content || !state.openRoomId) return;
  if ([...content].length > 4000) return showError('A message holds at most 4000 characters');
  state.outbox.add(state.openRoomId, content.replace(/\r\n?/g, '\n'), state.replyTo?.id ?? null);
  input.value = '';
  cancelReply();
  sendTyping(false);
  scrollToEnd();
}

function renderPending() {
  const items = state.outbox?.items.filter((item) => item.roomId === state.openRoomId) ?? [];
  byId('pending').replaceChildren(...items.map((item, index) =>
    h('article', { class: 'msg mine pending', 'data-client-id': item.clientId },
      h('p', { class: 'meta' }, h('span', { class: 'author' }, userName(state.me.id)), ' ',
        h('span', { class: 'hint' }, index === 0 && state.connection?.isWebSocket ? 'sending…' : 'waiting to be sent')),
      h('p', { class: 'content' }, item.content))));
}

function setupComposer() {
  const input = byId('composer-input');
  byId('composer').addEventListener('submit', (event) => { event.preventDefault(); send(); input.focus(); });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
    if (event.key === 'Escape' && state.replyTo) { event.preventDefault(); cancelReply(); }
  });
  input.addEventListener('input', () => sendTyping(input.value.trim() !== ''));
  input.addEventListener('blur', () => sendTyping(false));
  byId('cancel-reply').addEventListener('click', () => { cancelReply(); input.focus(); });
  byId('back').addEventListener('click', () => { location.hash = ''; });
}

// MARK: Boot

setupSignIn();
setupStart();
setupComposer();
setupTimelineKeys();
addEventListener('hashchange', () => { if (state.me) openRoomFromHash(); });
const session = loadSession();
if (session?.token) start(session.token, session.user); else showSignIn();
