// natter's browser client: the line protocol over a WebSocket at /ws, one line per text frame.
//
// Every command gets exactly one final line (OK <VERB> ... or ERROR <CODE> <text>; BYE for
// CLOSE) after its data lines (USER, MEMBER, TOPIC, ROOM, HELP, LOGGED, BAN), in order, so commands
// wait in a FIFO and each answer goes to the oldest one. Everything else is an event.
//
// The page says TAGS ON first on every connection: events then carry the server's time, and
// those with a kept message its id, which is how history and live lines merge without
// duplicates (see "history" below). Then MULTILINE ON: a message of several lines is one
// event, its line breaks written `\n` and its backslashes `\\` (see "multi-line texts").
//
// Text from the network is only ever put into the page with textContent.
'use strict';

(() => {
  // ---------------------------------------------------------------- small helpers

  const $ = (id) => document.getElementById(id);

  /** Names and room names compare ignoring ASCII case, as the server does. */
  const fold = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

  /** A MEMBER line's name: `@` marks an operator, `+` a voiced member. */
  function member(word) {
    if (word.startsWith('@')) return { name: word.slice(1), op: true, voice: false };
    if (word.startsWith('+')) return { name: word.slice(1), op: false, voice: true };
    return { name: word, op: false, voice: false };
  }

  /**
   * A room's modes as the page keeps them: flags, the key (null: none; '' when the server did
   * not show it) and the member limit (null: none). A new room is +nt.
   */
  const newModes = () => ({ i: false, m: false, s: false, n: true, t: true, k: null, l: null });

  /** `+ntkl sesame 20` (OK MODE's detail after the room) as modes; the key only for members. */
  function parseModes(text) {
    const [flags, ...args] = text.split(' ');
    const out = { ...newModes(), n: false, t: false };
    if (!flags.startsWith('+')) return out;
    const letters = flags.slice(1);
    // A key hidden from a non-member leaves one argument fewer: the limit's.
    const keyShown = args.length >= (letters.includes('k') ? 1 : 0) + (letters.includes('l') ? 1 : 0);
    for (const ch of letters) {
      if (ch === 'k') out.k = keyShown ? args.shift() ?? '' : '';
      else if (ch === 'l') out.l = Number(args.shift()) || null;
      else if (ch in out) out[ch] = true;
    }
    return out;
  }

  /** Splits off the first space-separated word: [word, rest-or-null]. */
  function split(s) {
    const i = s.indexOf(' ');
    return i < 0 ? [s, null] : [s.slice(0, i), s.slice(i + 1)];
  }

  /** Makes an element with a class and optional text (as text, never markup). */
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  // ---------------------------------------------------------------- multi-line texts
  //
  // After MULTILINE ON a message's text travels on its one line with `\n` for each line break
  // and `\\` for each backslash (PROTOCOL.md, MULTILINE). Any other backslash means itself.

  /** A text as a MULTILINE connection writes it. */
  function escapeText(text) {
    return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  }

  /** A text as a MULTILINE connection reads it: `\n` a line break, `\\` one backslash. */
  function unescapeText(text) {
    return text.replace(/\\([\\n])/g, (_, c) => (c === 'n' ? '\n' : '\\'));
  }

  /**
   * What was typed as the message to send, in the form the server keeps (so the page shows
   * what the others see): line breaks as LF, no blank lines before or after it, and a run of
   * blank lines inside as one empty line.
   */
  function tidyText(text) {
    const out = [];
    let gap = false;
    for (const line of text.replace(/\r\n?/g, '\n').split('\n')) {
      if (!line.trim()) {
        gap = out.length > 0;
        continue;
      }
      if (gap) out.push('');
      out.push(line);
      gap = false;
    }
    return out.join('\n');
  }

  /** A fence line: three backticks, then perhaps a language's name. */
  const FENCE = /^\s*```/;

  /**
   * A message's text as elements, built with textContent only: its lines kept (the element's
   * white-space is pre-wrap), `code` in single backticks as <code>, and a block between ```
   * lines as <pre><code> (a fence left open runs to the end, as in Markdown). `phrasing`: for
   * inside a button (a search result), where a block is a <code class="block"> instead.
   */
  function richText(tag, cls, text, { phrasing = false } = {}) {
    const out = el(tag, cls);
    const lines = text.split('\n');
    let prose = [];
    const flushProse = () => {
      if (!prose.length) return;
      inlineCode(out, prose.join('\n'));
      prose = [];
    };
    for (let i = 0; i < lines.length; i++) {
      if (!FENCE.test(lines[i])) {
        prose.push(lines[i]);
        continue;
      }
      const rest = lines[i].replace(FENCE, '');
      // ```code``` on one line is inline code, as in most chat apps.
      if (/\S.*```\s*$/.test(rest)) {
        prose.push(lines[i]);
        continue;
      }
      let end = i + 1;
      while (end < lines.length && !/^\s*```\s*$/.test(lines[end])) end += 1;
      flushProse();
      const code = el('code', phrasing ? 'block' : null, lines.slice(i + 1, end).join('\n'));
      // What follows ``` on its line names the language: a label, not part of the code.
      const lang = rest.trim();
      if (lang) code.dataset.lang = lang;
      if (phrasing) {
        out.append(code);
      } else {
        const pre = el('pre', 'code-block');
        pre.append(code);
        out.append(pre);
      }
      i = end;
    }
    flushProse();
    return out;
  }

  /** Appends `text` to `parent` with `code` and ```code``` spans as <code>, the rest as text. */
  function inlineCode(parent, text) {
    const re = /```([^`\n]+)```|`([^`\n]+)`/g;
    let at = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if (m.index > at) parent.append(text.slice(at, m.index));
      parent.append(el('code', null, m[1] ?? m[2]));
      at = m.index + m[0].length;
    }
    if (at < text.length) parent.append(text.slice(at));
  }

  /**
   * Times and dates as the reader's browser says (its languages, in order of preference): 12 or
   * 24 hours, the order of day and month, the names of days. A time is short ("9:05 PM",
   * "21:05"); the whole date and time is on hover (the <time>'s title).
   */
  const LOCALES = navigator.languages?.length ? [...navigator.languages] : undefined;
  const timeFmt = new Intl.DateTimeFormat(LOCALES, { hour: 'numeric', minute: '2-digit' });
  const fullFmt = new Intl.DateTimeFormat(LOCALES, { dateStyle: 'full', timeStyle: 'medium' });

  // ---------------------------------------------------------------- state

  const EVERYONE = 'everyone';
  const roomKey = (room) => 'room:' + fold(room);
  const dmKey = (name) => 'dm:' + fold(name);

  const state = {
    ws: null,
    connected: false, // the socket is open and greeted
    quit: false, // the user said /quit: do not reconnect
    attempt: 0, // reconnect attempts since the last success
    retryTimer: null,
    retryAt: 0,
    byeSeen: false, // a BYE said why the connection ends
    lastBye: null, // its reason
    lastByeText: null, // and its text
    lastEnd: null, // how the last connection ended, before a greeting: see connectError()
    greetTimer: null,
    password: null, // the server password, if it wants one (kept in memory only)
    secret: null, // an account's password, typed for the next LOGIN only
    account: null, // the account we are signed into, if any
    token: loadToken(), // {name, token}: signs in again without the password
    session: loadSession(), // this tab's resume token: a reload or reconnect takes the session back
    authed: false, // this connection has given it
    idle: false, // disconnected for a timeout: reconnect when the person is back
    countdownTimer: null,
    pending: [], // commands awaiting their final line, oldest first
    me: null, // the name the server gave us
    wanted: null, // the name to (re)take
    registeredOnce: false,
    nameTakenRetries: 0,
    users: new Map(), // fold(name) -> name, the online list
    accounts: new Set(), // fold(name) of those online logged into their name's account
    accountsTimer: null,
    listLog: null, // ONLINE/OFFLINE/RENAMED seen while a LIST is pending
    convs: new Map(), // key -> conversation
    active: EVERYONE,
    notify: false,
    muted: loadMuted(), // keys of the conversations that neither notify nor count loudly
    recall: { items: [], at: null }, // what was sent, for Up in the message box; `at`: shown
    multiline: false, // this connection said MULTILINE ON and the server took it
    switcher: { choices: [], active: 0 }, // the jump box's choices and the one Enter takes
  };

  /** A conversation: Everyone, a room or a DM. */
  function conv(key, kind, title) {
    let c = state.convs.get(key);
    if (!c) {
      c = {
        key, kind, title,
        items: [], // rendered <li> elements, kept across reconnects
        unread: 0,
        mentions: 0, // of the unread, how many say our name
        joined: false, // rooms: we are a member
        members: new Map(), // rooms: fold(name) -> {name, op, voice}
        modes: newModes(), // rooms: see newModes()
        topic: '',
        topicBy: '',
        lastActivity: 0,
        byId: new Map(), // message id -> its <li>: a message is shown once, live or from history
        loaded: 'no', // its history: 'no', 'loading', 'yes', or 'none' (the server keeps none for us)
        older: 'more', // older pages: 'more', 'loading', or 'done' once the start is reached
        firstUnread: null, // the <li> the "new messages" line goes above
        unconfirmed: [], // {li, text}: own messages whose OK the lost connection never brought
        reveal: null, // {id, pages}: a search result to show once its page is loaded
      };
      state.convs.set(key, c);
      if (kind === 'dm') saveDms();
    }
    return c;
  }

  const everyone = conv(EVERYONE, 'everyone', 'Everyone');

  /** The sign-in token kept from an earlier visit (never the password). */
  function loadToken() {
    try {
      const t = JSON.parse(localStorage.getItem('natter.account') || 'null');
      return t && typeof t.name === 'string' && typeof t.token === 'string' ? t : null;
    } catch (e) { return null; }
  }

  function saveToken(t) {
    state.token = t;
    try {
      if (t) localStorage.setItem('natter.account', JSON.stringify(t));
      else localStorage.removeItem('natter.account');
    } catch (e) { /* storage may be off */ }
  }

  /** This tab's resume token, kept across reloads of the tab (and only of this tab). */
  function loadSession() {
    try {
      const t = sessionStorage.getItem('natter.session');
      return t && t.startsWith('nr_') ? t : null;
    } catch (e) { return null; }
  }

  function saveSession(t) {
    state.session = t;
    try {
      if (t) sessionStorage.setItem('natter.session', t);
      else sessionStorage.removeItem('natter.session');
    } catch (e) { /* storage may be off */ }
  }

  /** The DM conversations open in this tab, kept across reloads like the session. */
  function saveDms() {
    const dms = [...state.convs.values()].filter((c) => c.kind === 'dm').map((c) => c.title);
    try { sessionStorage.setItem('natter.dms', JSON.stringify(dms)); } catch (e) { /* off */ }
  }

  function loadDms() {
    try {
      const dms = JSON.parse(sessionStorage.getItem('natter.dms') || '[]');
      return Array.isArray(dms) ? dms.filter((d) => typeof d === 'string') : [];
    } catch (e) { return []; }
  }

  /** Asks for a resume token for this session, so that a lost connection is not a leave. */
  function keepSession() {
    send('SESSION', 'SESSION', {
      ok: (detail) => {
        const [token] = split(detail);
        if (token && token.startsWith('nr_')) saveSession(token);
      },
    });
  }

  /** Takes this tab's session back after a reload or a lost connection. */
  function resumeSession() {
    if (state.password && !state.authed) {
      send(`PASSWORD ${state.password}`, 'PASSWORD', {
        ok: () => { state.authed = true; resumeSession(); },
        fail: () => { saveSession(null); signOn(); },
      });
      return;
    }
    send(`RESUME ${state.session}`, 'RESUME', {
      ok: (detail) => onResumed(detail),
      fail: (code) => {
        if (code === 'DISCONNECTED') return;
        // The session ended (or the server forgot it): take the name again as before.
        saveSession(null);
        signOn();
      },
    });
  }

  function onResumed(name) {
    const reloaded = !state.registeredOnce;
    state.me = name;
    state.wanted = name;
    state.attempt = 0;
    state.registeredOnce = true;
    if (state.token && fold(state.token.name) === fold(name)) state.account = state.token.name;
    setStatus('registered');
    ui.welcome.hidden = true;
    ui.app.hidden = false;
    if (reloaded) {
      for (const d of loadDms()) conv(dmKey(d), 'dm', d);
      system(everyone, `Welcome back, ${name}.`, 'event');
      renderNav();
      showConversation(EVERYONE);
      ui.input.focus();
    } else {
      systemAll(`Reconnected as ${name}.`, 'event');
    }
    // The rooms come as JOINED lines after the answer; what was missed follows them.
    refreshUsers();
    if (!reloaded) afterReconnect();
  }

  /** Asks for a token for the account we just signed into, and keeps it. */
  function keepSignedIn(name) {
    send('ACCOUNT TOKEN', 'ACCOUNT', {
      ok: (detail) => {
        const [word, token] = split(detail);
        if (word === 'TOKEN' && token) saveToken({ name, token });
      },
    });
  }

  // ---------------------------------------------------------------- elements

  const ui = {
    accountPassword: $('account-password'),
    accountError: $('account-error'),
    accountButton: $('account-button'),
    accountDialog: $('account-dialog'),
    accountState: $('account-state'),
    accountCreate: $('account-create'),
    accountManage: $('account-manage'),
    accountMessage: $('account-message'),
    createPassword: $('create-password'),
    oldPassword: $('old-password'),
    newPassword: $('new-password'),
    welcome: $('welcome'),
    nameForm: $('name-form'),
    nameInput: $('name-input'),
    nameError: $('name-error'),
    nameSubmit: $('name-submit'),
    passwordRow: $('password-row'),
    passwordInput: $('password-input'),
    passwordError: $('password-error'),
    welcomeStatus: $('welcome-status'),
    app: $('app'),
    conn: $('conn-status'),
    banner: $('banner'),
    bannerText: $('banner-text'),
    bannerAction: $('banner-action'),
    convList: $('conv-list'),
    roomList: $('room-list'),
    dmList: $('dm-list'),
    dmEmpty: $('dm-empty'),
    joinForm: $('join-form'),
    joinInput: $('join-input'),
    browse: $('browse-rooms'),
    title: $('conv-title'),
    topic: $('conv-topic'),
    roomActions: $('room-actions'),
    topicButton: $('topic-button'),
    roomMenuButton: $('room-menu-button'),
    roomFlags: $('room-flags'),
    sendButton: $('send-button'),
    menu: $('menu'),
    askDialog: $('ask-dialog'),
    askForm: $('ask-form'),
    askTitle: $('ask-title'),
    askText: $('ask-text'),
    askLabel: $('ask-label'),
    askInput: $('ask-input'),
    askError: $('ask-error'),
    askSubmit: $('ask-submit'),
    askCancel: $('ask-cancel'),
    bansDialog: $('bans-dialog'),
    bansTitle: $('bans-title'),
    bansStatus: $('bans-status'),
    bansList: $('bans-list'),
    leaveButton: $('leave-button'),
    topicForm: $('topic-form'),
    topicInput: $('topic-input'),
    topicCancel: $('topic-cancel'),
    messages: $('messages'),
    composer: $('composer'),
    input: $('composer-input'),
    typing: $('typing'),
    membersSection: $('members-section'),
    membersTitle: $('members-title'),
    memberList: $('member-list'),
    onlineList: $('online-list'),
    onlineCount: $('online-count'),
    notifyToggle: $('notify-toggle'),
    toggleNav: $('toggle-nav'),
    togglePeople: $('toggle-people'),
    sidebar: $('sidebar'),
    people: $('people'),
    scrim: $('scrim'),
    roomsDialog: $('rooms-dialog'),
    roomsStatus: $('rooms-dialog-status'),
    roomsList: $('rooms-dialog-list'),
    searchButton: $('search-button'),
    searchDialog: $('search-dialog'),
    searchForm: $('search-form'),
    searchInput: $('search-input'),
    searchHere: $('search-here'),
    searchHereLabel: $('search-here-label'),
    searchStatus: $('search-status'),
    searchResults: $('search-results'),
    jumpButton: $('jump-button'),
    muteButton: $('mute-button'),
    muteText: $('mute-text'),
    switcher: $('switcher'),
    switcherForm: $('switcher-form'),
    switcherInput: $('switcher-input'),
    switcherList: $('switcher-list'),
    switcherEmpty: $('switcher-empty'),
    // Drawn in the log around a conversation's lines (see "rendering messages").
    newMarker: marker('new-marker', 'New messages', 'separator'),
    loading: marker('history-loading', 'Loading earlier messages…', 'status'),
  };

  /** A line of the log that is no message: the "new messages" line, "Loading…". */
  function marker(cls, text, role) {
    const li = el('li', cls);
    li.setAttribute('role', role);
    li.setAttribute('aria-label', text);
    li.append(el('span', null, text));
    return li;
  }

  // ---------------------------------------------------------------- connection

  /** How long an open connection may stay silent before the page says it waits for a greeting. */
  const GREET_WAIT = 10_000;

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws`;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdownTimer);
    state.retryTimer = null;
    if (state.ws) return;
    setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      // The server greets at once; a connection that stays silent is worth saying so.
      clearTimeout(state.greetTimer);
      state.greetTimer = setTimeout(() => {
        if (state.ws === ws && !state.connected) setStatus('stalled');
      }, GREET_WAIT);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      for (const raw of ev.data.split('\n')) {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line) handleLine(line);
      }
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      clearTimeout(state.greetTimer);
      // What the browser tells of the end (little: a failed connection is only code 1006).
      state.lastEnd = {
        opened,
        greeted: state.connected,
        code: ev.code,
        reason: ev.reason,
        bye: state.lastBye ? state.lastByeText : null,
      };
      disconnected();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  function disconnected() {
    const wasConnected = state.connected;
    state.connected = false;
    state.authed = false;
    state.me = null;
    const failed = state.pending;
    state.pending = [];
    state.listLog = null;
    for (const p of failed) p.fail?.('DISCONNECTED', 'not sent: the connection was lost');
    for (const c of state.convs.values()) c.members.clear();
    renderPeople();
    if (wasConnected && state.registeredOnce && !state.byeSeen) {
      systemAll('Disconnected from the server.', 'error');
    }
    state.byeSeen = false;
    const bye = state.lastBye;
    state.lastBye = null;
    if (state.quit) {
      setStatus('quit');
      return;
    }
    if (bye === 'TIMEOUT' && !(state.wanted && !state.registeredOnce)) {
      // Timed out (never registered, or idle): come back when the person does, not in a loop.
      state.idle = true;
      setStatus('idle');
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    // 0.5 s, 1 s, 2 s, 4 s, then every 8 s, each with some jitter.
    const base = Math.min(8000, 500 * 2 ** state.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    state.retryTimer = setTimeout(connect, delay);
    setStatus('waiting');
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(() => setStatus('waiting'), 1000);
  }

  function reconnectNow() {
    state.quit = false;
    state.idle = false;
    state.attempt = 0;
    connect();
  }

  /** After an idle timeout: reconnect once the person does something. */
  function wake() {
    if (state.idle && !state.ws) reconnectNow();
  }

  /** Sends one command line; `handlers` receive its data lines and final answer. */
  function send(line, verb, handlers = {}) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.connected) {
      handlers.fail?.('DISCONNECTED', 'not connected; reconnecting…');
      return false;
    }
    state.pending.push({ verb, ...handlers });
    if (verb === 'LIST') state.listLog = state.listLog || [];
    state.ws.send(line);
    return true;
  }

  // ---------------------------------------------------------------- incoming lines

  /**
   * Splits the tags off a line (`@time=…;id=… LINE`, written after TAGS ON): [tags, line]. Only
   * the tags this page knows are taken, checked; the server may add others.
   */
  function untag(line) {
    if (!line.startsWith('@')) return [{}, line];
    const [head, rest] = split(line);
    const tags = {};
    for (const pair of head.slice(1).split(';')) {
      const eq = pair.indexOf('=');
      const [key, value] = eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
      if (key === 'id' && /^\d+$/.test(value)) tags.id = value;
      if (key === 'time') {
        const at = new Date(value);
        if (!Number.isNaN(at.getTime())) tags.at = at;
      }
    }
    return [tags, rest ?? ''];
  }

  function handleLine(tagged) {
    const [tags, line] = untag(tagged);
    const [kind, rest] = split(line);
    const r = rest ?? '';
    switch (kind) {
      case 'HELLO':
        return onHello(r);
      case 'OK': {
        const [verb, detail] = split(r);
        // The OK of a kept message carries its id: the sender gets no copy to learn it from.
        return finish((p) => p.ok?.(detail ?? '', verb, tags));
      }
      case 'ERROR': {
        const [code, text] = split(r);
        return finish((p) => (p.fail ? p.fail(code, text ?? code) : systemHere(sentence(text ?? code), 'error')));
      }
      case 'BYE':
        return onBye(r);
      case 'HELP':
      case 'USER':
      case 'MEMBER':
      case 'ROOM':
      case 'ACCOUNT':
      case 'BAN':
        return data(kind, r);
      case 'TOPIC': {
        const head = state.pending[0];
        const [room] = split(r);
        if (head && (head.verb === 'JOIN' || head.verb === 'TOPIC?') && head.room && fold(head.room) === fold(room)) {
          return data(kind, r);
        }
        return onTopic(r, true);
      }
      case 'MESSAGE': return onMessage(r, tags);
      case 'DM': return onDm(r, tags);
      case 'SENT': return onSent(r, tags);
      case 'ONLINE': return onUserEvent('ONLINE', r);
      case 'OFFLINE': return onUserEvent('OFFLINE', r);
      case 'RENAMED': return onUserEvent('RENAMED', r);
      case 'JOINED': return onJoined(r);
      case 'PARTED': return onParted(r);
      case 'KICKED': return onKicked(r);
      case 'SAY': return onSay(r, tags);
      case 'OPERATOR': return onOperator(r);
      case 'MODE': return onMode(r);
      case 'INVITED': return onInvited(r);
      case 'TYPING': return onTyping(r);
      // A page of HISTORY or SEARCH, or (after LOGIN) a DM that waited for this account.
      case 'LOGGED': return answersPending(r) ? data(kind, r) : onLogged(r);
      default:
        // A line type this page does not know: ignore it rather than guess.
        return undefined;
    }
  }

  /**
   * Whether a LOGGED line belongs to the command at the head of the queue. The DMs that waited
   * for an account come right after OK LOGIN, before the answer to anything sent after it, and
   * name their sender: a HISTORY of another target, or any other command, is not theirs.
   */
  function answersPending(rest) {
    const head = state.pending[0];
    if (!head) return false;
    if (head.verb === 'SEARCH') return true;
    const [target] = split(rest);
    return head.verb === 'HISTORY' && fold(head.target) === fold(target);
  }

  function data(kind, rest) {
    const head = state.pending[0];
    head?.data?.(kind, rest);
  }

  function finish(fn) {
    const p = state.pending.shift();
    fn(p || {});
  }

  function onHello() {
    clearTimeout(state.greetTimer);
    state.lastEnd = null;
    state.connected = true;
    setStatus('greeted');
    // Before anything else, so that no event comes without its time and id. A server that
    // does not know TAGS says so, and the page does without (no ids: no merging by id).
    send('TAGS ON', 'TAGS', { fail: () => {} });
    // Texts of several lines as one event each. An older server refuses it; its texts then
    // come as they are written, and the page sends a text of several lines line by line.
    state.multiline = false;
    send('MULTILINE ON', 'MULTILINE', { ok: () => { state.multiline = true; }, fail: () => {} });
    signOn();
  }

  /** Takes the session back, or the name, once greeted (again after a RESUME that failed). */
  function signOn() {
    if (state.session) return resumeSession();
    if (state.wanted) register(state.wanted, { auto: state.registeredOnce });
    return undefined;
  }

  function onBye(rest) {
    const [reason, text] = split(rest);
    const p = state.pending[0];
    if (p && p.verb === 'CLOSE') state.pending.shift();
    state.byeSeen = true;
    state.lastBye = reason;
    state.lastByeText = text ?? reason;
    if (reason === 'BAD_PASSWORD') {
      state.password = null;
      state.wanted = null;
      if (!state.me) showWelcome(null, { password: sentence(text ?? 'too many wrong passwords') });
    }
    if (reason !== 'SHUTDOWN') saveSession(null);
    if (reason === 'CLOSED') {
      state.quit = true;
      systemAll('You left the chat.', 'event');
    } else {
      systemAll(because('Disconnected by the server', text ?? reason), 'error');
    }
    // Close our side now, so the server need not wait for us.
    try { state.ws?.close(); } catch (e) { /* already closing */ }
  }

  // ---------------------------------------------------------------- registration

  function register(name, { auto = false } = {}) {
    state.wanted = name;
    if (!state.connected) {
      ui.welcomeStatus.textContent = 'Connecting… your name will be sent as soon as the server answers.';
      return;
    }
    const isRename = !!state.me;
    if (!isRename && state.password && !state.authed) {
      send(`PASSWORD ${state.password}`, 'PASSWORD', {
        ok: () => {
          state.authed = true;
          register(name, { auto });
        },
        fail: (code, text) => {
          if (code === 'DISCONNECTED') return;
          state.password = null;
          state.wanted = null;
          showWelcome(null, { password: sentence(text) });
        },
      });
      return;
    }
    const token = state.token && fold(state.token.name) === fold(name) ? state.token.token : null;
    const secret = state.secret || token;
    if (secret) {
      const typed = !!state.secret;
      state.secret = null;
      send(`LOGIN ${name} ${secret}`, 'LOGIN', {
        ok: (detail) => {
          state.account = detail || name;
          onRegistered(detail || name, isRename);
          if (typed) keepSignedIn(detail || name);
        },
        fail: (code, text) => {
          if (code === 'DISCONNECTED') return;
          state.wanted = isRename ? state.me : null;
          const stale = !typed && code === 'BAD_LOGIN';
          if (stale) saveToken(null);
          const why = stale ? 'Please sign in again: your saved sign-in is no longer valid.' : sentence(text);
          if (isRename) systemHere(stale ? why : because('Could not sign in', text), 'error');
          else showWelcome(null, { account: why });
        },
      });
      return;
    }
    send(`REGISTER ${name}`, 'REGISTER', {
      ok: (detail) => onRegistered(detail || name, isRename),
      fail: (code, text) => {
        if (code === 'DISCONNECTED') return;
        if (isRename) {
          state.wanted = state.me;
          systemHere(because('Could not change name', text), 'error');
        } else if (code === 'PASSWORD_REQUIRED') {
          state.wanted = null;
          showWelcome(null, { password: 'This server needs a password.' });
        } else if (code === 'NAME_RESERVED') {
          state.wanted = null;
          showWelcome(null, { account: `${name} is someone's account. If it is yours, enter its password.` });
        } else if (auto && code === 'NAME_TAKEN' && state.nameTakenRetries < 5) {
          // Our old connection may not have been noticed as gone yet: try again shortly.
          state.nameTakenRetries += 1;
          setTimeout(() => { if (state.connected && !state.me) register(name, { auto: true }); }, 1000 * state.nameTakenRetries);
        } else {
          state.wanted = null;
          showWelcome(sentence(text));
        }
      },
    });
  }

  function onRegistered(name, isRename) {
    const old = state.me;
    const first = !state.registeredOnce;
    const reconnected = !isRename && state.registeredOnce;
    state.me = name;
    state.wanted = name;
    state.attempt = 0;
    state.nameTakenRetries = 0;
    state.registeredOnce = true;
    try { localStorage.setItem('natter.name', name); } catch (e) { /* storage may be off */ }
    setStatus('registered');
    if (isRename) {
      if (old !== name) renamedSelf(old, name);
      // Logged into an account now, perhaps: its conversations' history may be readable.
      for (const c of state.convs.values()) if (c.kind === 'dm' && c.loaded === 'none') c.loaded = 'no';
      ensureHistory(state.convs.get(state.active) || everyone);
      return;
    }
    ui.welcome.hidden = true;
    ui.app.hidden = false;
    if (first) {
      system(everyone, `Welcome, ${name}! Messages here go to everyone online.`, 'event');
      showConversation(EVERYONE);
      ui.input.focus();
    }
    if (reconnected) {
      systemAll(`Reconnected as ${name}.`, 'event');
    }
    refreshUsers();
    if (!state.session) keepSession();
    // Re-join the rooms we were in.
    for (const c of state.convs.values()) {
      if (c.kind === 'room' && c.joined) joinRoom(c.title, { rejoin: true });
    }
    // After the JOINs: answers come in order, so each room's HISTORY finds us a member again.
    if (reconnected) afterReconnect();
  }

  function refreshUsers(print) {
    const names = [];
    send('LIST', 'LIST', {
      data: (kind, rest) => { if (kind === 'USER') names.push(rest); },
      ok: () => {
        const log = state.listLog || [];
        // Another LIST still pending keeps the log: replaying events its snapshot already
        // reflects, in order, changes nothing.
        if (!state.pending.some((p) => p.verb === 'LIST')) state.listLog = null;
        state.users = new Map(names.map((n) => [fold(n), n]));
        // The snapshot may predate events that arrived before it; re-apply them in order.
        for (const [kind, a, b] of log) applyUserEvent(kind, a, b);
        renderPeople();
        refreshAccounts();
        if (print) {
          const shown = [...state.users.values()].sort((x, y) => fold(x).localeCompare(fold(y)));
          systemHere(`Online (${shown.length}): ${shown.join(', ')}`, 'event');
        }
      },
      fail: (code, text) => { if (print) systemHere(sentence(text), 'error'); },
    });
  }

  /** Asks which of those online are logged into an account, to mark them in the list. */
  function refreshAccounts() {
    const names = [];
    send('ACCOUNTS', 'ACCOUNTS', {
      data: (kind, rest) => { if (kind === 'ACCOUNT') names.push(fold(rest)); },
      ok: () => {
        state.accounts = new Set(names);
        renderPeople();
      },
    });
  }

  /** The same, once arrivals settle: a crowd arriving asks once. */
  function refreshAccountsSoon() {
    clearTimeout(state.accountsTimer);
    state.accountsTimer = setTimeout(() => { if (state.me) refreshAccounts(); }, 300);
  }

  // ---------------------------------------------------------------- users online

  function applyUserEvent(kind, a, b) {
    if (kind === 'ONLINE') state.users.set(fold(a), a);
    else if (kind === 'OFFLINE') state.users.delete(fold(a));
    else if (kind === 'RENAMED') {
      state.users.delete(fold(a));
      state.users.set(fold(b), b);
    }
  }

  function onUserEvent(kind, rest) {
    const [a, b] = split(rest);
    if (state.listLog) state.listLog.push([kind, a, b]);
    applyUserEvent(kind, a, b);
    if (kind !== 'OFFLINE') refreshAccountsSoon();
    if (kind === 'ONLINE') {
      system(everyone, `${a} is online.`, 'event join');
      const dm = state.convs.get(dmKey(a));
      if (dm) system(dm, `${a} is online.`, 'event join');
    } else if (kind === 'OFFLINE') {
      // b is the reason, when there is one: the leaver's words, shown in quotes.
      const line = () => [nameIn(a), ' went offline', ...reasonParts(b), '.'];
      system(everyone, line(), 'event leave');
      const dm = state.convs.get(dmKey(a));
      if (dm) system(dm, line(), 'event leave');
    } else if (kind === 'RENAMED' && b && isMe(a)) {
      // The server renamed us (a name clash across a cluster): as if we had asked.
      state.wanted = b;
      onRegistered(b, true);
    } else if (kind === 'RENAMED' && b) {
      system(everyone, `${a} is now known as ${b}.`, 'event');
      renameEverywhere(a, b);
    }
    renderPeople();
  }

  /**
   * The page's own name changed (its REGISTER or LOGIN, or the server's RENAMED of it): the
   * server tells only the others, so the page updates its own lists itself.
   */
  function renamedSelf(old, now) {
    applyUserEvent('RENAMED', old, now);
    // A LIST answered after this may predate it: its replay must rename us too.
    if (state.listLog) state.listLog.push(['RENAMED', old, now]);
    for (const c of state.convs.values()) {
      const m = c.kind === 'room' ? c.members.get(fold(old)) : null;
      if (m) {
        c.members.delete(fold(old));
        c.members.set(fold(now), { ...m, name: now });
      }
    }
    systemAll(`You are now known as ${now}.`, 'event');
    refreshAccountsSoon();
    renderPeople();
  }

  function renameEverywhere(old, now) {
    // A DM conversation follows the person.
    const dm = state.convs.get(dmKey(old));
    if (dm) {
      const existing = state.convs.get(dmKey(now));
      if (!existing || existing === dm) {
        state.convs.delete(dm.key);
        dm.key = dmKey(now);
        dm.title = now;
        state.convs.set(dm.key, dm);
        if (state.active === dmKey(old)) state.active = dm.key;
        if (state.muted.delete(dmKey(old))) { state.muted.add(dm.key); saveMuted(); }
        saveDms();
      }
      system(dm, `${old} is now known as ${now}.`, 'event');
    }
    for (const c of state.convs.values()) {
      if (c.kind !== 'room') continue;
      const m = c.members.get(fold(old));
      if (m) {
        c.members.delete(fold(old));
        c.members.set(fold(now), { ...m, name: now });
        system(c, `${old} is now known as ${now}.`, 'event');
      }
    }
    renderNav();
    renderHeader();
  }

  // ---------------------------------------------------------------- messages

  /** Whether `name` is this page's own (a line another connection of the account sent). */
  function isMe(name) {
    return !!state.me && fold(name) === fold(state.me);
  }

  /** What a tagged line says of its message: its id (if kept) and the server's time. */
  const kept = (tags) => ({ id: tags.id ?? null, at: tags.at ?? new Date() });

  /** A text from an event or a LOGGED line, its line breaks back. */
  const textOf = (text) => (text == null ? '' : state.multiline ? unescapeText(text) : text);

  function onMessage(rest, tags) {
    const [from, raw] = split(rest);
    const text = textOf(raw);
    const li = message(everyone, from, text ?? '', { own: isMe(from), ...kept(tags) });
    alertFor(everyone, li, from, text ?? '');
  }

  /** A DM sent from another connection of this account. */
  function onSent(rest, tags) {
    const [to, raw] = split(rest);
    const text = textOf(raw);
    const c = conv(dmKey(to), 'dm', to);
    message(c, state.me, text ?? '', { own: true, ...kept(tags) });
  }

  function onDm(rest, tags) {
    const [from, raw] = split(rest);
    const text = textOf(raw);
    const c = conv(dmKey(from), 'dm', from);
    c.title = from;
    alertFor(c, message(c, from, text ?? '', kept(tags)), from, text ?? '');
  }

  /** `LOGGED <target> <id> <time> <from> <text>` as {target, id, at, from, text}, or null. */
  function parseLogged(rest) {
    const [target, r1] = split(rest);
    const [id, r2] = split(r1 ?? '');
    const [time, r3] = split(r2 ?? '');
    const [from, text] = split(r3 ?? '');
    if (!target || !/^\d+$/.test(id) || !from) return null;
    const at = new Date(time);
    return { target, id, at: Number.isNaN(at.getTime()) ? new Date() : at, from, text: textOf(text) };
  }

  /** A DM that waited for this account while it was offline (after LOGIN), at its own time. */
  function onLogged(rest) {
    const m = parseLogged(rest);
    if (!m || m.target === '*' || m.target.startsWith('#')) return;
    const c = conv(dmKey(m.target), 'dm', m.target);
    message(c, m.from, m.text, { own: isMe(m.from), at: m.at, id: m.id });
  }

  function onSay(rest, tags) {
    const [room, r2] = split(rest);
    const [from, raw] = split(r2 ?? '');
    const text = textOf(raw);
    const c = conv(roomKey(room), 'room', room);
    const li = message(c, from, text ?? '', { own: isMe(from), ...kept(tags) });
    alertFor(c, li, from, text ?? '');
  }

  /** Sends `text` to the active conversation, showing it at once as ours. */
  function sendText(typed) {
    const text = tidyText(typed);
    if (!text.trim()) return false;
    if (text.includes('\n') && !state.multiline && state.connected) {
      // A server without MULTILINE: one message a line, as it would pass them on itself.
      const lines = text.split('\n').filter((l) => l.trim());
      return lines.map((l) => sendText(l)).every(Boolean);
    }
    const c = state.convs.get(state.active) || everyone;
    const wire = state.multiline ? escapeText(text) : text;
    let line, verb;
    if (c.kind === 'everyone') [line, verb] = [`MESSAGE ${wire}`, 'MESSAGE'];
    else if (c.kind === 'room') [line, verb] = [`SAY ${c.title} ${wire}`, 'SAY'];
    else [line, verb] = [`DM ${c.title} ${wire}`, 'DM'];
    if (c.kind === 'room' && !c.joined) {
      system(c, `You are not in ${c.title}; join it again to talk here.`, 'error');
      return false;
    }
    if (!state.connected || !state.me) {
      system(c, 'Not connected yet; your message was not sent. Reconnecting…', 'error');
      return false;
    }
    // Writing here is reading here: the "new messages" line has done its job.
    if (c.firstUnread) {
      c.firstUnread = null;
      ui.newMarker.remove();
    }
    const item = message(c, state.me, text, { own: true });
    item.classList.add('sending');
    send(line, verb, {
      ok: (detail, _verb, tags) => {
        item.classList.remove('sending');
        confirmSent(c, item, tags);
        if (verb === 'DM') {
          // OK DM <name> [QUEUED]: the recipient's name as registered.
          const [name] = split(detail.trim());
          if (name && name !== c.title && fold(name) === fold(c.title)) {
            c.title = name;
            renderNav();
            renderHeader();
          }
        }
      },
      fail: (code, why) => {
        item.classList.remove('sending');
        if (code === 'STORE_UNAVAILABLE') {
          // Delivered all the same; only the history will not have it.
          item.querySelector('.body')?.append(el('span', 'note', 'Delivered, but not kept in the history.'));
          return;
        }
        item.classList.add('failed');
        const note = el('span', 'fail-note', code === 'DISCONNECTED'
          ? 'The connection was lost before the server confirmed this message.'
          : code === 'MODERATED'
            ? `Not delivered: ${c.title} is moderated, and only its operators and voiced members may speak.`
            : code === 'BANNED'
              ? `Not delivered: you are banned from ${c.title}, and may not speak there without voice.`
              : because('Not delivered', why));
        item.querySelector('.body')?.append(note);
        // It may have been kept all the same: the history after a reconnect will say.
        if (code === 'DISCONNECTED') c.unconfirmed.push({ li: item, text });
      },
    });
    return true;
  }

  /** Our message is kept: it takes the id (and the server's time) its OK carries. */
  function confirmSent(c, li, tags) {
    if (tags.at) setTime(li, tags.at);
    if (!tags.id) return;
    li.dataset.id = tags.id;
    c.byId.set(tags.id, li);
  }

  /**
   * An own message the history holds although its OK never came (the connection was lost
   * first): it was kept after all, so the one shown as failed is it. Returns that <li>.
   */
  function adoptUnconfirmed(c, m) {
    if (!isMe(m.from)) return null;
    const i = c.unconfirmed.findIndex((u) => u.text === m.text);
    if (i < 0) return null;
    const [{ li }] = c.unconfirmed.splice(i, 1);
    li.classList.remove('failed');
    li.querySelector('.fail-note')?.remove();
    li.dataset.id = m.id;
    setTime(li, m.at);
    return li;
  }

  // ---------------------------------------------------------------- rooms

  /**
   * Joins a room (with its key, if it has one). `refused(code, text)` may take a refusal on
   * itself (the key dialog does) by returning true; `joined()` follows a success.
   */
  function joinRoom(room, { rejoin = false, show = true, key = null, refused = null, joined = null } = {}) {
    if (!room.startsWith('#')) room = '#' + room;
    const existing = state.convs.get(roomKey(room));
    if (existing && existing.joined && !rejoin) {
      openConversation(existing.key);
      return;
    }
    // Back in a room with a key after a lost connection: the key it had (members see it).
    if (rejoin && !key && existing?.modes.k) key = existing.modes.k;
    const members = [];
    let topic = null;
    send(key ? `JOIN ${room} ${key}` : `JOIN ${room}`, 'JOIN', {
      room,
      data: (kind, rest) => {
        if (kind === 'MEMBER') {
          const [, name] = split(rest);
          if (name) members.push(name);
        } else if (kind === 'TOPIC') {
          const [, r2] = split(rest);
          const [by, text] = split(r2 ?? '');
          topic = { by, text: text ?? '' };
        }
      },
      ok: (detail) => {
        const [name] = split(detail);
        const c = conv(roomKey(name || room), 'room', name || room);
        c.title = name || room;
        c.joined = true;
        c.members = new Map(members.map((m) => {
          const p = member(m);
          return [fold(p.name), p];
        }));
        c.topic = topic ? topic.text : '';
        c.topicBy = topic ? topic.by : '';
        queryModes(c);
        joined?.();
        if (rejoin) {
          system(c, `Rejoined ${c.title}.`, 'event');
        } else {
          // Back in a room read before: what was said while we were out.
          catchUp(c);
          system(c, `You joined ${c.title}.`, 'event join');
          if (topic && topic.text) system(c, ['Topic, set by ', nameIn(topic.by), ': ', said(topic.text)], 'event topic');
        }
        renderNav();
        // Joined to talk: the cursor goes to the room's message box (not the join field).
        if (show && !rejoin) openConversation(c.key);
        else if (state.active === c.key) { renderHeader(); renderPeople(); }
      },
      fail: (code, text) => {
        if (code === 'DISCONNECTED' && rejoin) return;
        if (refused?.(code, text)) return;
        const c = state.convs.get(roomKey(room));
        if (code === 'ALREADY_IN_ROOM' && c) {
          // Another connection of this account is in it already, so this one is too.
          c.joined = true;
          renderNav();
          return;
        }
        if (code === 'BAD_KEY' && !rejoin) {
          askKeyToJoin(room);
          return;
        }
        const why = joinRefusal(code, room) || because(`Could not ${rejoin ? 'rejoin' : 'join'} ${room}`, text);
        if (rejoin && c) {
          c.joined = false;
          system(c, why, 'error');
          renderNav();
        } else {
          systemHere(why, 'error');
        }
      },
    });
  }

  /** The room's own refusals of a JOIN, in the page's words (null for the others). */
  function joinRefusal(code, room) {
    switch (code) {
      case 'BANNED': return `You are banned from ${room}: you cannot join it.`;
      case 'INVITE_ONLY': return `${room} is invite-only: you can join once one of its members invites you.`;
      case 'BAD_KEY': return `${room} has a key: you need it to join.`;
      case 'ROOM_FULL': return `${room} is full: it has as many members as it may.`;
      default: return null;
    }
  }

  /** BAD_KEY: asks for the room's key and joins with it, until it is right or given up. */
  function askKeyToJoin(room) {
    ask({
      title: `Join ${room}`,
      text: `${room} has a key. Its members can tell you what it is.`,
      label: 'Key',
      action: 'Join',
      submit: (key, done) => {
        if (!key || /[\s,]/.test(key)) {
          done('A key is one word, without spaces or commas.');
          return;
        }
        joinRoom(room, {
          key,
          refused: (code, text) => {
            if (code === 'BAD_KEY') done(`That is not the key of ${room}.`);
            else done(joinRefusal(code, room) || sentence(text));
            return true;
          },
          joined: () => done(null),
        });
      },
    });
  }

  /** Asks the server for a room's modes (after joining: they come with no other answer). */
  function queryModes(c) {
    send(`MODE ${c.title}`, 'MODE', {
      ok: (detail) => {
        const [, modes] = split(detail);
        c.modes = parseModes(modes ?? '+');
        renderRoom(c);
      },
      fail: () => {},
    });
  }

  /** Draws what depends on a room's modes and its members' status, if it is shown. */
  function renderRoom(c) {
    if (state.active !== c.key) return;
    renderHeader();
    renderPeople();
  }

  /** The page's own place in a room: {op, voice}. */
  function mine(c) {
    const m = state.me ? c.members.get(fold(state.me)) : null;
    return { op: !!m?.op, voice: !!m?.voice };
  }

  function partRoom(c, reason) {
    const line = reason ? `PART ${c.title} ${reason}` : `PART ${c.title}`;
    send(line, 'PART', {
      ok: () => {
        c.joined = false;
        c.members.clear();
        system(c, `You left ${c.title}.`, 'event leave');
        if (state.active === c.key) showConversation(EVERYONE);
        renderNav();
      },
      fail: (code, text) => {
        if (code === 'NOT_IN_ROOM' || code === 'NO_SUCH_ROOM') {
          c.joined = false;
          renderNav();
          if (state.active === c.key) showConversation(EVERYONE);
        }
        system(c, because(`Could not leave ${c.title}`, text), 'error');
      },
    });
  }

  function onJoined(rest) {
    const [room, name] = split(rest);
    const c = conv(roomKey(room), 'room', room);
    if (!name) return;
    if (isMe(name)) {
      // Joined from another connection of this account (or this one logged into it).
      c.joined = true;
      renderNav();
      who(c);
      queryModes(c);
      return;
    }
    const was = c.members.get(fold(name));
    c.members.set(fold(name), { name, op: was?.op ?? false, voice: was?.voice ?? false });
    system(c, `${name} joined ${c.title}.`, 'event join');
    if (state.active === c.key) renderPeople();
  }

  function onParted(rest) {
    const [room, r2] = split(rest);
    const [name, reason] = split(r2 ?? '');
    const c = conv(roomKey(room), 'room', room);
    if (isMe(name)) {
      c.joined = false;
      c.members.clear();
      system(c, `You left ${c.title}.`, 'event leave');
      renderNav();
      if (state.active === c.key) { renderHeader(); renderPeople(); }
      return;
    }
    c.members.delete(fold(name));
    system(c, [nameIn(name), ` left ${c.title}`, ...reasonParts(reason), '.'], 'event leave');
    if (state.active === c.key) renderPeople();
  }

  function onKicked(rest) {
    const [room, r2] = split(rest);
    const [name, r3] = split(r2 ?? '');
    const [by, reason] = split(r3 ?? '');
    const c = conv(roomKey(room), 'room', room);
    const why = reasonParts(reason);
    if (state.me && fold(name) === fold(state.me)) {
      c.joined = false;
      c.members.clear();
      system(c, [`You were removed from ${c.title} by `, nameIn(by), ...why, '.'], 'error');
      renderNav();
      if (state.active === c.key) renderHeader();
    } else {
      c.members.delete(fold(name));
      system(c, [nameIn(name), ` was removed from ${c.title} by `, nameIn(by), ...why, '.'], 'event leave');
    }
    if (state.active === c.key) renderPeople();
  }

  function onOperator(rest) {
    const [room, name] = split(rest);
    const c = conv(roomKey(room), 'room', room);
    if (!name) return;
    const m = c.members.get(fold(name));
    c.members.set(fold(name), { name: m?.name ?? name, op: true, voice: !!m?.voice });
    const who = state.me && fold(name) === fold(state.me) ? 'You are' : `${name} is`;
    system(c, `${who} now an operator of ${c.title}.`, 'event');
    renderRoom(c);
  }

  /**
   * `MODE <room> <by> <change> [arg]`: an operator changed one of the room's modes (a new
   * operator comes as OPERATOR instead). The room's state follows, and its log says it.
   */
  function onMode(rest) {
    const [room, r2] = split(rest);
    const [by, r3] = split(r2 ?? '');
    const [change, arg] = split(r3 ?? '');
    if (!by || !/^[+-][a-zA-Z]$/.test(change ?? '')) return;
    const c = conv(roomKey(room), 'room', room);
    const on = change[0] === '+';
    const letter = change[1];
    if (letter === 'k') c.modes.k = on ? arg ?? '' : null;
    else if (letter === 'l') c.modes.l = on ? Number(arg) || null : null;
    else if (letter === 'v' || letter === 'o') {
      const m = arg ? c.members.get(fold(arg)) : null;
      if (m) m[letter === 'v' ? 'voice' : 'op'] = on;
      // No longer an operator: the operator's menus are not ours to keep open.
      if (letter === 'o' && !on && isMe(arg ?? '')) closeMenu();
    } else if (letter in c.modes) c.modes[letter] = on;
    system(c, modeSentence(c, by, change, arg ?? ''), 'event mode');
    renderRoom(c);
  }

  /**
   * A mode change as a sentence of the room's log ("ann made #r invite-only."), not as IRC
   * writes it. Names and masks are drawn as names; the key is not repeated.
   */
  function modeSentence(c, by, change, arg) {
    const who = isMe(by) ? 'You' : nameIn(by);
    const on = change[0] === '+';
    const r = c.title;
    const target = isMe(arg) ? 'you' : nameIn(arg);
    switch (change[1]) {
      case 'i': return [who, on ? ` made ${r} invite-only.` : ` opened ${r}: no invitation is needed to join.`];
      case 'k': return [who, on ? ` set a key on ${r}: joining needs it.` : ` removed the key of ${r}.`];
      case 'l': return [who, on ? ` limited ${r} to ${arg} members.` : ` removed the member limit of ${r}.`];
      case 'm': return [who, on ? ` made ${r} moderated: only operators and voiced members may speak.` : ` made ${r} unmoderated: every member may speak.`];
      case 's': return [who, on ? ` made ${r} secret: it is hidden from those outside it.` : ` made ${r} no longer secret.`];
      case 'n': return [who, on ? ` let only members speak in ${r}.` : ` let everyone speak in ${r}, members or not.`];
      case 't': return [who, on ? ` let only operators set the topic of ${r}.` : ` let every member set the topic of ${r}.`];
      case 'b': {
        const account = arg.startsWith('$a:');
        const mask = account ? ['the account ', nameIn(arg.slice(3))] : [nameIn(arg)];
        return [who, on ? ' banned ' : ' lifted the ban on ', ...mask, on ? ` from ${r}.` : '.'];
      }
      case 'v': return on ? [who, ' gave ', target, ' voice.'] : [who, ' took voice from ', target, '.'];
      case 'o': return on ? [who, ' made ', target, ` an operator of ${r}.`] : [who, ' took operator status from ', target, '.'];
      default: return [who, ` changed a mode of ${r}: `, nameIn(`${change}${arg ? ` ${arg}` : ''}`), '.'];
    }
  }

  /** `INVITED <room> <by>`: a notice where the person is looking, with a button to join. */
  function onInvited(rest) {
    const [room, by] = split(rest);
    if (!room || !by) return;
    const join = el('button', 'link-button inline-action', 'Join');
    join.type = 'button';
    join.setAttribute('aria-label', `Join ${room}`);
    join.addEventListener('click', () => {
      join.disabled = true;
      joinRoom(room, { refused: () => { join.disabled = false; return false; } });
    });
    systemHere([nameIn(by), ` invited you to ${room}. `, join], 'event invite');
  }

  function onTopic(rest, isEvent) {
    const [room, r2] = split(rest);
    const [by, text] = split(r2 ?? '');
    const c = conv(roomKey(room), 'room', room);
    c.topic = text ?? '';
    c.topicBy = by;
    if (isEvent) {
      system(c, c.topic ? [nameIn(by), ' set the topic: ', said(c.topic)] : [nameIn(by), ' cleared the topic.'], 'event topic');
    }
    if (state.active === c.key) renderHeader();
  }

  function setTopic(c, text) {
    send(`TOPIC ${c.title} ${text}`, 'TOPIC', {
      fail: (code, why) => system(c, because('Could not set the topic', why), 'error'),
    });
  }

  function queryTopic(c) {
    let topic = null;
    send(`TOPIC ${c.title}`, 'TOPIC?', {
      room: c.title,
      data: (kind, rest) => {
        if (kind !== 'TOPIC') return;
        const [, r2] = split(rest);
        const [by, text] = split(r2 ?? '');
        topic = { by, text: text ?? '' };
      },
      ok: () => {
        c.topic = topic ? topic.text : '';
        c.topicBy = topic ? topic.by : '';
        system(c, topic && topic.text ? ['Topic, set by ', nameIn(topic.by), ': ', said(topic.text)] : `${c.title} has no topic.`, 'event topic');
        if (state.active === c.key) renderHeader();
      },
      fail: (code, why) => system(c, sentence(why), 'error'),
    });
  }

  function who(c) {
    const members = [];
    send(`WHO ${c.title}`, 'WHO', {
      data: (kind, rest) => {
        if (kind !== 'MEMBER') return;
        const [, name] = split(rest);
        if (name) members.push(name);
      },
      ok: () => {
        c.members = new Map(members.map((m) => {
          const p = member(m);
          return [fold(p.name), p];
        }));
        system(c, `Members of ${c.title} (${members.length}): ${members.join(', ')}`, 'event');
        if (state.active === c.key) renderPeople();
      },
      fail: (code, why) => system(c, sentence(why), 'error'),
    });
  }

  /** Asks for the room list; `done` gets [{room, count, topic}] or an error text. */
  function listRooms(done) {
    const rooms = [];
    send('ROOMS', 'ROOMS', {
      data: (kind, rest) => {
        if (kind !== 'ROOM') return;
        const [room, r2] = split(rest);
        const [count, topic] = split(r2 ?? '');
        rooms.push({ room, count: Number(count) || 0, topic: topic ?? '' });
      },
      ok: () => done(rooms, null),
      fail: (code, why) => done(null, why),
    });
  }

  function openRoomsDialog() {
    ui.roomsList.replaceChildren();
    ui.roomsStatus.textContent = 'Loading…';
    if (!ui.roomsDialog.open) ui.roomsDialog.showModal();
    listRooms((rooms, error) => {
      if (error) {
        ui.roomsStatus.textContent = sentence(error);
        return;
      }
      ui.roomsStatus.textContent = rooms.length ? `${rooms.length} room${rooms.length === 1 ? '' : 's'}` : 'No rooms yet. Join one by name to create it.';
      for (const r of rooms) {
        const li = el('li', 'browse-item');
        const info = el('div', 'browse-info');
        info.append(el('span', 'browse-name', r.room));
        info.append(el('span', 'muted small', `${r.count} member${r.count === 1 ? '' : 's'}`));
        if (r.topic) info.append(el('span', 'browse-topic', r.topic));
        const mine = state.convs.get(roomKey(r.room));
        const b = el('button', 'primary', mine && mine.joined ? 'Open' : 'Join');
        b.type = 'button';
        b.setAttribute('aria-label', `${mine && mine.joined ? 'Open' : 'Join'} ${r.room}`);
        b.addEventListener('click', () => {
          ui.roomsDialog.close();
          joinRoom(r.room);
        });
        li.append(info, b);
        ui.roomsList.append(li);
      }
      const first = ui.roomsList.querySelector('button');
      if (first && ui.roomsDialog.open) first.focus();
    });
  }

  // ---------------------------------------------------------------- moderation
  //
  // An operator's tools: the room's menu in its header (modes, invitations, bans) and a menu
  // on each member (voice, operator, ban, remove). Each sends one MODE (or INVITE, KICK); what
  // changed comes back as the MODE event every member gets, which is what redraws the page,
  // so the page never shows a change the server did not make.

  /** Sends one mode change; a refusal is said in the room's log. */
  function setMode(c, change, arg, what) {
    send(arg ? `MODE ${c.title} ${change} ${arg}` : `MODE ${c.title} ${change}`, 'MODE', {
      fail: (code, why) => system(c, because(`Could not ${what}`, why), 'error'),
    });
  }

  function roomMenu(c) {
    const m = c.modes;
    const flag = (letter, label, on, off) => ({
      label,
      checked: m[letter],
      run: () => setMode(c, `${m[letter] ? '-' : '+'}${letter}`, null, m[letter] ? off : on),
    });
    return [
      flag('i', 'Invite only', `make ${c.title} invite-only`, `open ${c.title}`),
      flag('m', 'Moderated', `make ${c.title} moderated`, `make ${c.title} unmoderated`),
      flag('s', 'Secret', `make ${c.title} secret`, `make ${c.title} no longer secret`),
      flag('t', 'Only operators set the topic', 'keep the topic to operators', 'let every member set the topic'),
      null,
      { label: m.k !== null ? 'Change the key…' : 'Set a key…', run: () => askRoomKey(c) },
      m.k !== null ? { label: 'Remove the key', run: () => setMode(c, '-k', null, `remove the key of ${c.title}`) } : false,
      { label: m.l ? `Member limit (${m.l})…` : 'Member limit…', run: () => askLimit(c) },
      m.l ? { label: 'Remove the member limit', run: () => setMode(c, '-l', null, `remove the member limit of ${c.title}`) } : false,
      null,
      { label: 'Invite…', run: () => askInvite(c) },
      { label: 'Bans…', run: () => openBans(c) },
    ].filter((x) => x !== false);
  }

  /**
   * The ban for a member: their account's ($a:name) if they are signed into one, which holds
   * whatever name they take next; otherwise their name, from any address.
   */
  const banMask = (name) => (state.accounts.has(fold(name)) ? `$a:${name}` : `${name}!*@*`);

  function memberMenu(c, name) {
    const m = c.members.get(fold(name)) || { name, op: false, voice: false };
    return [
      m.voice
        ? { label: 'Remove voice', run: () => setMode(c, '-v', name, `take voice from ${name}`) }
        : { label: 'Give voice', run: () => setMode(c, '+v', name, `give ${name} voice`) },
      m.op
        ? { label: 'Remove operator', run: () => setMode(c, '-o', name, `take operator status from ${name}`) }
        : { label: 'Make operator', run: () => setMode(c, '+o', name, `make ${name} an operator`) },
      null,
      { label: 'Ban', danger: true, run: () => setMode(c, '+b', banMask(name), `ban ${name}`) },
      {
        label: 'Remove from room',
        danger: true,
        run: () => send(`KICK ${c.title} ${name}`, 'KICK', {
          fail: (code, why) => system(c, because(`Could not remove ${name}`, why), 'error'),
        }),
      },
    ];
  }

  // The menu: one popup for the room's and the members' menus, as menus go on the desktop:
  // arrows move, Enter or a click chooses, Esc (or Tab, or a click elsewhere) closes, and the
  // focus goes back to the button that opened it.

  let menuAnchor = null;

  /** Opens the menu under `anchor` (or at a pointer's `x`, `y`); `items`: {label, run, checked, danger} or null for a line. */
  function openMenu(anchor, items, { x = null, y = null } = {}) {
    closeMenu(false);
    menuAnchor = anchor;
    anchor.setAttribute('aria-expanded', 'true');
    ui.menu.setAttribute('aria-label', anchor.getAttribute('aria-label') || 'Menu');
    ui.menu.classList.toggle('has-checks', items.some((item) => item && item.checked !== undefined));
    ui.menu.replaceChildren(...items.map((item) => {
      if (!item) {
        const sep = el('div', 'menu-sep');
        sep.setAttribute('role', 'separator');
        return sep;
      }
      const b = el('button', `menu-item${item.danger ? ' danger' : ''}`, item.label);
      b.type = 'button';
      b.tabIndex = -1;
      if (item.checked !== undefined) {
        b.setAttribute('role', 'menuitemcheckbox');
        b.setAttribute('aria-checked', String(!!item.checked));
      } else {
        b.setAttribute('role', 'menuitem');
      }
      b.addEventListener('click', () => {
        closeMenu();
        item.run();
      });
      return b;
    }));
    ui.menu.hidden = false;
    // Below the button (or the pointer), kept inside the window.
    const a = anchor.getBoundingClientRect();
    const w = ui.menu.offsetWidth;
    const h = ui.menu.offsetHeight;
    const left = x ?? a.right - w;
    const top = y ?? a.bottom + 4;
    ui.menu.style.left = `${Math.max(8, Math.min(left, window.innerWidth - w - 8))}px`;
    ui.menu.style.top = `${Math.max(8, top + h > window.innerHeight - 8 ? (y ?? a.top) - h - 4 : top)}px`;
    menuItems()[0]?.focus();
  }

  const menuItems = () => [...ui.menu.querySelectorAll('.menu-item')];

  function closeMenu(refocus = true) {
    if (ui.menu.hidden) return;
    ui.menu.hidden = true;
    const anchor = menuAnchor;
    menuAnchor = null;
    if (!anchor) return;
    anchor.setAttribute('aria-expanded', 'false');
    if (!refocus) return;
    // A member list drawn anew meanwhile has a new button for the same person.
    const label = anchor.getAttribute('aria-label');
    const back = anchor.isConnected ? anchor : [...document.querySelectorAll('[aria-haspopup="menu"]')].find((b) => b.getAttribute('aria-label') === label);
    back?.focus();
  }

  function menuKey(e) {
    const items = menuItems();
    const i = items.indexOf(document.activeElement);
    let next = null;
    if (e.key === 'ArrowDown') next = (i + 1) % items.length;
    else if (e.key === 'ArrowUp') next = (i - 1 + items.length) % items.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = items.length - 1;
    else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation(); // the menu, not whatever is open beneath it
      closeMenu();
      return;
    } else if (e.key === 'Tab') {
      closeMenu(false);
      return;
    }
    if (next === null) return;
    e.preventDefault();
    items[next]?.focus();
  }

  // The dialog that asks for one thing (a key, a limit, a name): `submit(value, done)` acts,
  // and calls done(null) to close or done(text) to say in the dialog what went wrong.

  let asking = null;

  function ask({ title, text, label, action, value = '', type = 'text', submit }) {
    asking = { submit };
    ui.askTitle.textContent = title;
    ui.askText.textContent = text;
    ui.askLabel.textContent = label;
    ui.askSubmit.textContent = action;
    ui.askInput.type = type;
    ui.askInput.value = value;
    ui.askError.textContent = '';
    ui.askInput.removeAttribute('aria-invalid');
    if (!ui.askDialog.open) ui.askDialog.showModal();
    ui.askInput.focus();
    ui.askInput.select();
  }

  function askDone(error) {
    if (!ui.askDialog.open) return;
    if (error === null) {
      ui.askDialog.close();
      return;
    }
    ui.askError.textContent = error;
    ui.askInput.setAttribute('aria-invalid', 'true');
    ui.askInput.focus();
  }

  /** Sends a MODE from the dialog: it closes on OK and says a refusal in place. */
  function modeFromDialog(c, change, arg, done) {
    send(`MODE ${c.title} ${change} ${arg}`, 'MODE', {
      ok: () => done(null),
      fail: (code, why) => done(sentence(why)),
    });
  }

  function askRoomKey(c) {
    ask({
      title: `Key of ${c.title}`,
      text: 'Those who join will need this key (invited people do not). Tell it to whoever should come in.',
      label: 'Key',
      action: 'Set key',
      value: c.modes.k || '',
      submit: (key, done) => {
        if (!/^[\x21-\x2b\x2d-\x7e]{1,23}$/.test(key)) {
          done('A key is 1 to 23 letters, digits or signs, without spaces or commas.');
          return;
        }
        modeFromDialog(c, '+k', key, done);
      },
    });
  }

  function askLimit(c) {
    ask({
      title: `Member limit of ${c.title}`,
      text: 'Nobody more joins once the room has this many members (invited people still may).',
      label: 'Most members',
      action: 'Set limit',
      type: 'number',
      value: c.modes.l ? String(c.modes.l) : String(Math.max(2, c.members.size)),
      submit: (n, done) => {
        if (!/^[1-9]\d{0,8}$/.test(n)) {
          done('The limit is a whole number from 1.');
          return;
        }
        modeFromDialog(c, '+l', n, done);
      },
    });
  }

  function askInvite(c) {
    ask({
      title: `Invite to ${c.title}`,
      text: c.modes.i || c.modes.k !== null || c.modes.l
        ? `They get a notice with a button to join, and come in past the ${[c.modes.i && 'invitation rule', c.modes.k !== null && 'key', c.modes.l && 'limit'].filter(Boolean).join(' and ')}.`
        : 'They get a notice with a button to join.',
      label: 'Name',
      action: 'Invite',
      submit: (name, done) => {
        if (!name || /\s/.test(name)) {
          done('Type the name of someone online.');
          return;
        }
        send(`INVITE ${c.title} ${name}`, 'INVITE', {
          ok: (detail) => {
            const [, who] = split(detail);
            system(c, `You invited ${who || name} to ${c.title}.`, 'event');
            done(null);
          },
          fail: (code, why) => done(code === 'USER_IN_ROOM' ? `${name} is in ${c.title} already.` : sentence(why)),
        });
      },
    });
  }

  /** The ban list (BANS), each with a button that lifts it. */
  function openBans(c) {
    ui.bansTitle.textContent = `Bans in ${c.title}`;
    ui.bansStatus.textContent = 'Loading…';
    ui.bansList.replaceChildren();
    if (!ui.bansDialog.open) ui.bansDialog.showModal();
    const bans = [];
    send(`BANS ${c.title}`, 'BANS', {
      data: (kind, rest) => {
        if (kind !== 'BAN') return;
        const [, r2] = split(rest);
        const [mask, r3] = split(r2 ?? '');
        const [by, time] = split(r3 ?? '');
        if (mask) bans.push({ mask, by: by ?? '', at: new Date(time ?? '') });
      },
      ok: () => renderBans(c, bans),
      fail: (code, why) => { ui.bansStatus.textContent = sentence(why); },
    });
  }

  function renderBans(c, bans) {
    const n = bans.length;
    ui.bansStatus.textContent = n ? `${n} ban${n === 1 ? '' : 's'}` : `Nobody is banned from ${c.title}.`;
    ui.bansList.replaceChildren(...bans.map((ban) => {
      const li = el('li', 'browse-item');
      const info = el('div', 'browse-info');
      const account = ban.mask.startsWith('$a:');
      info.append(el('span', 'browse-name ban-mask', account ? `account ${ban.mask.slice(3)}` : ban.mask));
      const when = Number.isNaN(ban.at.getTime()) ? '' : `, ${resultFmt.format(ban.at)}`;
      info.append(el('span', 'muted small', `by ${ban.by}${when}`));
      const b = el('button', null, 'Remove');
      b.type = 'button';
      b.setAttribute('aria-label', `Remove the ban on ${ban.mask}`);
      b.addEventListener('click', () => {
        b.disabled = true;
        send(`MODE ${c.title} -b ${ban.mask}`, 'MODE', {
          ok: () => {
            const rest = bans.filter((x) => x !== ban);
            renderBans(c, rest);
            // The focus stays in the list, on the next ban's button (or on Close).
            (ui.bansList.querySelector('button') || ui.bansDialog.querySelector('.dialog-actions button'))?.focus();
          },
          fail: (code, why) => {
            b.disabled = false;
            ui.bansStatus.textContent = sentence(why);
          },
        });
      });
      li.append(info, b);
      return li;
    }));
  }

  // ---------------------------------------------------------------- history
  //
  // A conversation asks for its history (HISTORY <target>) the first time it is shown, older
  // pages (BEFORE the oldest id it holds) when scrolled to the top, and after a reconnect what
  // it missed (AFTER the newest id it holds). Every message is kept by its id in c.byId, so
  // whatever comes twice (live and in a page, or in two pages) is shown once.

  const OLDER_PAGE = 50; // messages per page when scrolling back
  const CATCH_UP_PAGE = 200; // messages per page when filling the gap of a reconnect

  /** The HISTORY and SEARCH target of a conversation. */
  const targetOf = (c) => (c.kind === 'everyone' ? '*' : c.title);

  /** Whether the server would let us read the conversation's history now. */
  function readable(c) {
    return !!state.me && state.connected && !(c.kind === 'room' && !c.joined);
  }

  /**
   * Asks for a page of a conversation's history (`args`: limit, BEFORE or AFTER) and merges it;
   * `done(rows, error)` follows. NO_HISTORY, STORE_UNAVAILABLE and a lost connection are
   * quiet: the conversation shows what it has.
   */
  function requestHistory(c, args, { fresh = false } = {}, done = () => {}) {
    const target = targetOf(c);
    const rows = [];
    send(args ? `HISTORY ${target} ${args}` : `HISTORY ${target}`, 'HISTORY', {
      target,
      data: (kind, rest) => {
        const m = kind === 'LOGGED' ? parseLogged(rest) : null;
        if (m) rows.push(m);
      },
      ok: () => {
        mergeHistory(c, rows, { fresh });
        done(rows, null);
      },
      fail: (code) => done(rows, code),
    });
  }

  /** The first showing of a conversation: its newest page of history, above what came live. */
  function ensureHistory(c) {
    if (c.loaded !== 'no' || !readable(c)) return;
    c.loaded = 'loading';
    showLoading(c);
    requestHistory(c, '', {}, (rows, error) => {
      // Asked again on the next showing if the store or the connection failed this time.
      const retry = error === 'STORE_UNAVAILABLE' || error === 'DISCONNECTED';
      c.loaded = !error ? 'yes' : retry ? 'no' : 'none';
      if (error || !rows.length) c.older = 'done';
      showLoading(c);
      if (!error) { revealPending(c); loadOlderIfAtTop(c); }
    });
  }

  /** Scrolled to the top: the page before the oldest message held, keeping the view still. */
  function loadOlder(c) {
    if (c.loaded !== 'yes' || c.older !== 'more' || !readable(c)) return;
    const first = oldestId(c);
    if (!first) { c.older = 'done'; return; }
    c.older = 'loading';
    showLoading(c);
    requestHistory(c, `${OLDER_PAGE} BEFORE ${first}`, {}, (rows, error) => {
      // Fewer than asked: the start of the history (or of what is kept) is reached.
      const end = error === 'NO_HISTORY' || (!error && rows.length < OLDER_PAGE);
      c.older = end ? 'done' : 'more';
      showLoading(c);
      // After an error, only the person scrolling again asks again: no loop on a failing store.
      if (!error) { revealPending(c); loadOlderIfAtTop(c); }
    });
  }

  /** Loads older messages while the conversation is shown from its top (or does not fill it). */
  function loadOlderIfAtTop(c) {
    if (state.active === c.key && ui.messages.scrollTop < 80) loadOlder(c);
  }

  /**
   * After a reconnect: what was said since the newest message held, page by page until none
   * is left (bounded), so there is no gap. Conversations never shown yet fetch their newest page
   * when first shown.
   */
  function catchUp(c, after = newestId(c) ?? '0', fetched = 0) {
    if (c.loaded !== 'yes' || !readable(c)) return;
    requestHistory(c, `${CATCH_UP_PAGE} AFTER ${after}`, { fresh: true }, (rows, error) => {
      if (!error && rows.length === CATCH_UP_PAGE && fetched + rows.length < MAX_ITEMS) {
        catchUp(c, rows[rows.length - 1].id, fetched + rows.length);
      }
    });
  }

  /** Back after a lost connection: every conversation fetches what it missed. */
  function afterReconnect() {
    for (const c of state.convs.values()) catchUp(c);
    ensureHistory(state.convs.get(state.active) || everyone);
  }

  const idOf = (li) => (li.dataset.id ? BigInt(li.dataset.id) : null);

  function oldestId(c) {
    let min = null;
    for (const id of c.byId.keys()) if (min === null || BigInt(id) < BigInt(min)) min = id;
    return min;
  }

  function newestId(c) {
    let max = null;
    for (const id of c.byId.keys()) if (max === null || BigInt(id) > BigInt(max)) max = id;
    return max;
  }

  /**
   * Places a page of history among what the conversation holds, each message once. `fresh`:
   * what a reconnect missed, new to the person (unread, under the "new messages" line).
   */
  function mergeHistory(c, rows, { fresh = false } = {}) {
    let added = 0;
    for (const m of rows) {
      if (c.byId.has(m.id)) continue;
      let li = adoptUnconfirmed(c, m);
      if (!li) {
        li = messageItem(m.from, m.text, { own: isMe(m.from), at: m.at, id: m.id });
        insertItem(c, li);
        if (fresh) countUnread(c, li);
      }
      c.byId.set(m.id, li);
      added += 1;
    }
    if (!added) return;
    if (state.active === c.key) keepingPlace(() => renderMessages(c));
    if (fresh) { renderNav(); updateTitle(); }
  }

  /** Inserts a message from the history where its id and time put it. */
  function insertItem(c, li) {
    const i = slotFor(c, idOf(li), Number(li.dataset.at));
    c.items.splice(i, 0, li);
    follow(c.items[i - 1], li);
    follow(li, c.items[i + 1]);
  }

  /**
   * Where a message from the history goes: after the last message with a smaller id, then
   * after the page's own lines (joins, "Reconnected as…", unsent messages) from before its time.
   * So a first page goes above everything shown so far, and what a reconnect missed goes where
   * it happened.
   */
  function slotFor(c, id, at) {
    let i = 0;
    for (let j = c.items.length - 1; j >= 0; j--) {
      const other = idOf(c.items[j]);
      if (other !== null && other < id) { i = j + 1; break; }
    }
    while (i < c.items.length && idOf(c.items[i]) === null && Number(c.items[i].dataset.at) <= at) i += 1;
    return i;
  }

  /** A search result opened: shows its message once loaded, scrolling back a few pages for it. */
  function reveal(c, id) {
    c.reveal = { id, pages: 10 };
    revealPending(c);
  }

  function revealPending(c) {
    const r = c.reveal;
    if (!r || state.active !== c.key) return;
    const li = c.byId.get(r.id);
    if (li) {
      c.reveal = null;
      li.scrollIntoView({ block: 'center' });
      li.classList.remove('found');
      void li.offsetWidth; // restarts the highlight when the same result is opened again
      li.classList.add('found');
    } else if (c.loaded === 'yes' && c.older === 'more' && r.pages > 0 && BigInt(r.id) < BigInt(oldestId(c) ?? '0')) {
      r.pages -= 1;
      loadOlder(c);
    } else if (c.loaded !== 'loading' && c.older !== 'loading') {
      c.reveal = null; // not within reach: the conversation is open, that will do
    }
  }

  // ---------------------------------------------------------------- rendering messages
  //
  // c.items holds a conversation's lines in order (messages and the page's own system lines).
  // The log shows the active conversation's items, with a separator where the local day
  // changes, the "new messages" line, and "Loading…" at the top while a page is on its way;
  // those are drawn around the items, never kept among them.

  /**
   * Adds a message that arrived live to a conversation and returns its element, or null if the
   * conversation shows it already (a history page brought it first).
   */
  function message(c, from, text, { own = false, at = new Date(), id = null } = {}) {
    if (id && c.byId.has(id)) return null;
    const li = messageItem(from, text, { own, at, id });
    if (id) c.byId.set(id, li);
    follow(c.items[c.items.length - 1], li);
    add(c, li, true);
    return li;
  }

  /** A message's element: avatar, sender, time, text (as text, never markup). */
  function messageItem(from, text, { own = false, at = new Date(), id = null } = {}) {
    const li = el('li', 'msg');
    if (own) li.classList.add('own');
    li.dataset.from = from;
    if (id) li.dataset.id = id;
    li.dataset.at = String(at.getTime());
    const me = text.startsWith('/me ') && text.length > 4;
    const avatar = el('span', `avatar hue-${hue(from)}`, initial(from));
    avatar.setAttribute('aria-hidden', 'true');
    const content = el('div', 'content');
    const body = el('div', 'body');
    const head = el('div', 'meta');
    const who = el('span', 'from', from);
    head.append(who, stamp(at));
    if (!own && mentionsMe(text)) {
      li.classList.add('mention');
      head.append(el('span', 'visually-hidden', 'mentions you'));
    }
    if (me) {
      li.classList.add('action');
      body.append(richText('div', 'text', `* ${from} ${text.slice(4)}`));
    } else {
      body.append(richText('div', 'text', text));
    }
    content.append(head, body);
    li.append(avatar, content);
    return li;
  }

  /** Shows `li` under `prev`'s header when the same person wrote both, close together. */
  function follow(prev, li) {
    if (!li || li.classList.contains('system')) return;
    const gap = Number(li.dataset.at) - Number(prev?.dataset.at);
    const same = !!prev && !prev.classList.contains('system') && prev.dataset.from === li.dataset.from
      && prev.classList.contains('own') === li.classList.contains('own')
      && gap < 5 * 60_000 && dayOf(prev) === dayOf(li);
    li.classList.toggle('cont', same);
  }

  /** The server's time for a message shown before its OK (or history) said when it was kept. */
  function setTime(li, at) {
    li.dataset.at = String(at.getTime());
    li.querySelector('time')?.replaceWith(stamp(at));
  }

  /** A stable colour (one of eight) for a name, whatever its case. */
  function hue(name) {
    let h = 0;
    for (const ch of fold(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 8;
  }

  function initial(name) {
    const m = /[A-Za-z0-9]/.exec(name);
    return (m ? m[0] : name[0] || '?').toUpperCase();
  }

  /**
   * Adds a system line (an event, an answer or an error) to a conversation: a text, or parts
   * (texts and the elements of said() and nameIn()) for a line that quotes what someone typed.
   */
  function system(c, parts, kind = 'event') {
    const li = el('li', `msg system ${kind}`);
    const now = new Date();
    li.dataset.at = String(now.getTime());
    const text = el('span', 'text');
    text.append(...[parts].flat());
    li.append(text, stamp(now));
    add(c, li, false);
    return li;
  }

  /**
   * What someone typed (a reason, a topic) inside one of the page's own lines, set apart so it
   * cannot pass for more of the page's lines: quoted and in italics, on one line (runs of white
   * space shown as one, cut short with "…", whole on hover), its direction isolated. So a kick
   * reason of 200 spaces and "atk is now an operator of #r." stays inside its quotes, on the
   * kick's line.
   */
  function said(text) {
    const flat = text.replace(/\s+/g, ' ').trim();
    const outer = el('span', 'said');
    outer.title = flat;
    outer.append(el('span', 'said-text', flat));
    return outer;
  }

  /** A name inside one of the page's lines (names hold no spaces: it is one word). */
  const nameIn = (name) => el('span', 'name', name);

  /** " (reason)" after a part or a kick, as parts for system(); nothing without a reason. */
  const reasonParts = (reason) => (reason && reason.trim() ? [' (', said(reason), ')'] : []);

  const systemHere = (text, kind) => system(state.convs.get(state.active) || everyone, text, kind);

  /** A line for every conversation that is open (connection changes concern them all). */
  function systemAll(text, kind) {
    for (const c of state.convs.values()) {
      if (c.kind === 'room' && !c.joined) continue;
      system(c, text, kind);
    }
  }

  function stamp(now = new Date()) {
    const t = el('time', 'time', timeFmt.format(now));
    t.dateTime = now.toISOString();
    t.title = fullFmt.format(now);
    return t;
  }

  const MAX_ITEMS = 2000;

  function add(c, li, counts) {
    c.items.push(li);
    c.lastActivity = Date.now();
    const unread = counts && countUnread(c, li);
    if (state.active === c.key) {
      const stick = nearBottom();
      if (trim(c)) keepingPlace(() => renderMessages(c));
      else appendToLog(c, li);
      if (stick || li.classList.contains('own')) scrollToEnd();
    } else {
      trim(c);
    }
    if (unread || (state.active !== c.key && c.kind === 'dm')) renderNav();
    updateTitle();
  }

  /**
   * Counts a message as unread if the person is not looking at its conversation; the first
   * since they last did gets the "new messages" line. Returns whether it counted.
   */
  function countUnread(c, li) {
    if (li.classList.contains('own') || (state.active === c.key && !document.hidden)) return false;
    const i = c.items.indexOf(li);
    if (!c.unread || !c.firstUnread || i < c.items.indexOf(c.firstUnread)) {
      c.firstUnread = li;
      if (state.active === c.key) placeMarker(c);
    }
    c.unread += 1;
    if (li.classList.contains('mention')) c.mentions += 1;
    return true;
  }

  /**
   * Drops the oldest lines past MAX_ITEMS (a hundred at a time, to redraw seldom); they can be
   * loaded again by scrolling up. Returns whether it did.
   */
  function trim(c) {
    if (c.items.length <= MAX_ITEMS + 100) return false;
    for (const g of c.items.splice(0, c.items.length - MAX_ITEMS)) {
      if (g.dataset.id) c.byId.delete(g.dataset.id);
      if (g === c.firstUnread) c.firstUnread = null;
      c.unconfirmed = c.unconfirmed.filter((u) => u.li !== g);
    }
    if (c.older === 'done') c.older = 'more';
    return true;
  }

  /** Draws the active conversation's log afresh. */
  function renderMessages(c) {
    const out = [];
    if (c.loaded === 'loading' || c.older === 'loading') out.push(ui.loading);
    let day = null;
    for (const li of c.items) {
      if (dayOf(li) !== day) {
        day = dayOf(li);
        out.push(daySeparator(Number(li.dataset.at)));
      }
      if (li === c.firstUnread) out.push(ui.newMarker);
      out.push(li);
    }
    ui.messages.replaceChildren(...out);
  }

  /** Adds the newest line to the log, after a day separator if the day changed. */
  function appendToLog(c, li) {
    const prev = c.items[c.items.length - 2];
    if (!prev || dayOf(prev) !== dayOf(li)) ui.messages.append(daySeparator(Number(li.dataset.at)));
    if (li === c.firstUnread) ui.messages.append(ui.newMarker);
    ui.messages.append(li);
  }

  /** Moves the "new messages" line above the active conversation's first unread message. */
  function placeMarker(c) {
    if (c.firstUnread?.isConnected) c.firstUnread.before(ui.newMarker);
    else ui.newMarker.remove();
  }

  /** Shows or hides "Loading…" at the top of the log, without moving what is in view. */
  function showLoading(c) {
    if (state.active !== c.key) return;
    const busy = c.loaded === 'loading' || c.older === 'loading';
    ui.messages.setAttribute('aria-busy', String(busy));
    if (busy === ui.loading.isConnected) return;
    keepingPlace(() => (busy ? ui.messages.prepend(ui.loading) : ui.loading.remove()));
  }

  /**
   * Changes the log without moving what the person reads: the first line in view stays where it
   * is on the screen (a log read at its bottom stays at its bottom).
   */
  function keepingPlace(change) {
    const box = ui.messages;
    if (nearBottom()) {
      change();
      scrollToEnd();
      return;
    }
    const top = box.getBoundingClientRect().top;
    const anchor = [...box.children].find((x) => x.classList.contains('msg') && x.getBoundingClientRect().bottom > top);
    const before = anchor?.getBoundingClientRect().top;
    change();
    if (anchor?.isConnected) box.scrollTop += anchor.getBoundingClientRect().top - before;
  }

  /** The local day of a line, as a key. */
  function dayOf(li) {
    const d = new Date(Number(li.dataset.at));
    return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
  }

  const dayFmt = new Intl.DateTimeFormat(LOCALES, { weekday: 'long', day: 'numeric', month: 'long' });
  const yearDayFmt = new Intl.DateTimeFormat(LOCALES, { dateStyle: 'full' });

  /**
   * "Today", "Yesterday", or the date (with the year if not this one), as of drawing: a log
   * left open past midnight says "Today" for yesterday until it is drawn again.
   */
  function dayLabel(at) {
    const d = new Date(at);
    const today = new Date();
    const midnight = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
    const days = Math.round((midnight(today) - midnight(d)) / 86_400_000);
    if (days === 0) return 'Today';
    if (days === 1) return 'Yesterday';
    return (d.getFullYear() === today.getFullYear() ? dayFmt : yearDayFmt).format(d);
  }

  /** The separator above a day's first line. */
  function daySeparator(at) {
    const li = el('li', 'day-sep');
    li.setAttribute('role', 'separator');
    const label = dayLabel(at);
    li.setAttribute('aria-label', label);
    const t = el('time', null, label);
    const d = new Date(at);
    t.dateTime = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
    li.append(t);
    return li;
  }

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  /**
   * The tab's title, as chat apps do: "(2) natter" for two messages for you (mentions and DMs),
   * "* natter" for other unread messages, muted conversations left out. The menu button of a
   * narrow screen carries the same news.
   */
  function updateTitle() {
    let loud = 0;
    let unread = 0;
    for (const c of state.convs.values()) {
      if (isMuted(c)) continue;
      loud += loudCount(c);
      unread += c.unread;
    }
    document.title = loud ? `(${loud}) natter` : unread ? '* natter' : 'natter';
    const navUnread = $('nav-unread');
    navUnread.hidden = unread === 0;
    navUnread.textContent = String(loud || unread);
    navUnread.classList.toggle('mention', loud > 0);
    const news = unread ? `, ${unread} unread${loud ? `, ${loud} for you` : ''}` : '';
    ui.toggleNav.setAttribute('aria-label', `${ui.sidebar.classList.contains('open') ? 'Hide' : 'Show'} conversations${news}`);
  }

  // ---------------------------------------------------------------- rendering panels

  function showConversation(key) {
    const c = state.convs.get(key) || everyone;
    const left = state.convs.get(state.active);
    // The conversation left has been read: its "new messages" line has done its job.
    if (left && left !== c) left.firstUnread = null;
    state.active = c.key;
    closeMenu(false);
    markRead(c);
    renderMessages(c);
    ui.messages.setAttribute('aria-label', `Messages in ${c.title}`);
    ui.messages.setAttribute('aria-busy', String(ui.loading.isConnected));
    ui.topicForm.hidden = true;
    renderHeader();
    renderNav();
    renderPeople();
    updateTitle();
    scrollToEnd();
    scrollToMarker();
    closePanels();
    renderSearchScope();
    ensureHistory(c);
    renderTyping();
  }

  /** Opening a conversation with more unread than fit: start at the first of them. */
  function scrollToMarker() {
    if (!ui.newMarker.isConnected) return;
    const above = ui.newMarker.getBoundingClientRect().top - ui.messages.getBoundingClientRect().top;
    if (above < 0) ui.messages.scrollTop += above - 8;
  }

  function renderHeader() {
    const c = state.convs.get(state.active) || everyone;
    ui.title.textContent = c.kind === 'dm' ? `@ ${c.title}` : c.title;
    const inRoom = c.kind === 'room' && c.joined;
    ui.roomActions.hidden = !inRoom;
    const me = inRoom ? mine(c) : { op: false, voice: false };
    // Offered only to those the server lets do it: operators, and every member of a -t room.
    ui.topicButton.hidden = !inRoom || !(me.op || !c.modes.t);
    if (ui.topicButton.hidden) ui.topicForm.hidden = true;
    ui.roomMenuButton.hidden = !inRoom || !me.op;
    ui.roomMenuButton.setAttribute('aria-label', `Manage ${c.title}`);
    renderFlags(c, inRoom);
    ui.topic.removeAttribute('title');
    if (c.kind === 'room') {
      ui.topic.textContent = c.joined ? (c.topic || 'No topic') : 'You are not in this room.';
      ui.topic.classList.toggle('muted', !c.topic || !c.joined);
      // The header shows one line of it: the whole topic on hover.
      if (c.joined && c.topic) ui.topic.title = `${c.topic} (set by ${c.topicBy})`;
    } else if (c.kind === 'dm') {
      const on = state.users.has(fold(c.title));
      ui.topic.textContent = on ? 'Direct message — online' : 'Direct message — offline';
      ui.topic.classList.add('muted');
    } else {
      const n = state.users.size;
      ui.topic.textContent = `Everyone online${n ? ` · ${n} ${n === 1 ? 'person' : 'people'}` : ''}`;
      ui.topic.classList.add('muted');
    }
    const placeholder = c.kind === 'everyone' ? 'Message Everyone' : c.kind === 'room' ? `Message ${c.title}` : `Message ${c.title} privately`;
    ui.input.placeholder = `${placeholder} — /help for commands`;
    // A moderated room the person may not speak in: the box says so rather than refuse later.
    const silenced = inRoom && c.modes.m && !me.op && !me.voice;
    ui.input.disabled = silenced;
    ui.sendButton.disabled = silenced;
    if (silenced) ui.input.placeholder = 'Only operators and voiced members may speak here';
    ui.input.setAttribute('aria-label', `Message ${c.kind === 'everyone' ? 'Everyone' : c.title}`);
    renderMute(c);
  }

  /** Beside a room's name: a lock for a key or invitations, "moderated" for +m. */
  function renderFlags(c, inRoom) {
    const flags = [];
    if (inRoom && (c.modes.i || c.modes.k !== null)) {
      const why = [c.modes.i && 'invite-only', c.modes.k !== null && 'joining needs a key'].filter(Boolean).join('; ');
      const lock = el('span', 'room-flag lock');
      lock.setAttribute('role', 'img');
      lock.setAttribute('aria-label', `Locked: ${why}`);
      lock.title = `Locked: ${why}`;
      flags.push(lock);
    }
    if (inRoom && c.modes.m) {
      const m = el('span', 'room-flag tag', 'moderated');
      m.title = 'Only operators and voiced members may speak';
      flags.push(m);
    }
    if (inRoom && c.modes.s) {
      const sec = el('span', 'room-flag tag', 'secret');
      sec.title = 'Hidden from those outside the room';
      flags.push(sec);
    }
    ui.roomFlags.replaceChildren(...flags);
  }

  function navButton(c, label) {
    const li = el('li');
    const b = el('button', 'conv');
    b.type = 'button';
    b.dataset.conv = c.key;
    if (state.active === c.key) b.setAttribute('aria-current', 'page');
    b.append(el('span', 'conv-name', label));
    const muted = isMuted(c);
    if (muted) b.append(muteMark());
    if (c.unread) b.append(badgeFor(c));
    // A DM is for you as a whole: its mentions are not counted apart.
    const mentions = c.kind !== 'dm' && !muted && c.mentions ? `, ${c.mentions} mention${c.mentions === 1 ? '' : 's'}` : '';
    b.setAttribute('aria-label', `${label}${c.unread ? `, ${c.unread} unread${mentions}` : ''}${muted ? ', muted' : ''}`);
    b.classList.toggle('is-muted', muted);
    if (c.kind === 'dm' && !state.users.has(fold(c.title))) b.classList.add('offline');
    b.addEventListener('click', () => openConversation(c.key));
    li.append(b);
    return li;
  }

  function renderNav() {
    ui.convList.replaceChildren(navButton(everyone, 'Everyone'));
    const rooms = [...state.convs.values()].filter((c) => c.kind === 'room' && c.joined)
      .sort((a, b) => fold(a.title).localeCompare(fold(b.title)));
    ui.roomList.replaceChildren(...rooms.map((c) => navButton(c, c.title)));
    const dms = [...state.convs.values()].filter((c) => c.kind === 'dm')
      .sort((a, b) => b.lastActivity - a.lastActivity);
    ui.dmList.replaceChildren(...dms.map((c) => navButton(c, c.title)));
    ui.dmEmpty.hidden = dms.length > 0;
    // The active room was left (or we were kicked): its header says so.
  }

  /** A person in the online list, or in a room's member list (`room`: that room's conv). */
  function personItem(name, { op = false, voice = false, room = null } = {}) {
    const li = el('li', 'person');
    const isMe = state.me && fold(name) === fold(state.me);
    const b = el('button', 'person-button');
    b.type = 'button';
    const dot = el('span', 'dot');
    dot.setAttribute('aria-hidden', 'true');
    b.append(dot, el('span', 'person-name', name));
    const account = state.accounts.has(fold(name));
    if (account) {
      const mark = el('span', 'account-mark', '✓');
      mark.title = `${name} is signed into the account ${name}`;
      b.append(mark);
    }
    if (op) b.append(el('span', 'tag', 'op'));
    if (voice && !op) {
      const v = el('span', 'tag voice', 'voice');
      v.title = `${name} may speak when the room is moderated`;
      b.append(v);
    }
    if (isMe) {
      b.append(el('span', 'tag', 'you'));
      b.disabled = true;
      b.setAttribute('aria-label', `${name} (you)`);
    } else {
      const who = `${name}${account ? ', account' : ''}${op ? ', operator' : ''}${voice && !op ? ', voiced' : ''}`;
      b.setAttribute('aria-label', `${who}: send a direct message`);
      b.addEventListener('click', () => openDm(name));
    }
    li.dataset.name = name;
    li.append(b);
    // An operator's tools for another member: a button (keyboard, touch) and the context menu.
    if (room && !isMe && mine(room).op) {
      const more = el('button', 'icon-button person-more');
      more.type = 'button';
      more.setAttribute('aria-haspopup', 'menu');
      more.setAttribute('aria-expanded', 'false');
      more.setAttribute('aria-label', `Manage ${name}`);
      more.innerHTML = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false"><circle cx="5" cy="12" r="1.8" fill="currentColor"/><circle cx="12" cy="12" r="1.8" fill="currentColor"/><circle cx="19" cy="12" r="1.8" fill="currentColor"/></svg>';
      more.addEventListener('click', () => openMenu(more, memberMenu(room, name)));
      li.addEventListener('contextmenu', (e) => {
        e.preventDefault();
        openMenu(more, memberMenu(room, name), e.clientX ? { x: e.clientX, y: e.clientY } : {});
      });
      li.classList.add('managed');
      li.append(more);
    }
    return li;
  }

  function renderPeople() {
    const names = [...state.users.values()].sort((a, b) => fold(a).localeCompare(fold(b)));
    ui.onlineList.replaceChildren(...names.map((n) => personItem(n)));
    ui.onlineCount.textContent = names.length ? String(names.length) : '';
    const c = state.convs.get(state.active);
    if (c && c.kind === 'room' && c.joined) {
      ui.membersSection.hidden = false;
      ui.membersTitle.textContent = `Members of ${c.title}`;
      ui.memberList.setAttribute('aria-label', `Members of ${c.title}`);
      // Operators first, then voiced members, as the server's lists and IRC clients have them.
      const rank = (m) => (m.op ? 2 : m.voice ? 1 : 0);
      const ms = [...c.members.values()].sort((a, b) => (rank(b) - rank(a)) || fold(a.name).localeCompare(fold(b.name)));
      // Drawn anew, the list keeps the keyboard's place: the button that had the focus has it again.
      const focused = ui.memberList.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
      ui.memberList.replaceChildren(...ms.map((m) => personItem(m.name, { op: m.op, voice: m.voice, room: c })));
      if (focused) [...ui.memberList.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused)?.focus();
    } else {
      ui.membersSection.hidden = true;
    }
    if (c && c.kind !== 'room') renderHeader();
    renderNavPresence();
  }

  function renderNavPresence() {
    for (const b of ui.dmList.querySelectorAll('button.conv')) {
      const c = state.convs.get(b.dataset.conv);
      if (c) b.classList.toggle('offline', !state.users.has(fold(c.title)));
    }
  }

  function openDm(name) {
    const c = conv(dmKey(name), 'dm', name);
    renderNav();
    openConversation(c.key);
  }

  /** Shows a conversation the person chose, with the cursor in its message box. */
  function openConversation(key) {
    showConversation(key);
    focusComposer();
  }

  /**
   * Puts the cursor in the message box, except on touch screens: there it would open the
   * on-screen keyboard over the conversation just opened, before the person asked to write.
   */
  function focusComposer() {
    if (window.matchMedia?.('(pointer: coarse)').matches) return;
    ui.input.focus();
  }

  // ---------------------------------------------------------------- status and banner

  function setStatus(what) {
    let text = '';
    let banner = null;
    let action = null;
    let problem = null; // the welcome form's status says something went wrong
    switch (what) {
      case 'connecting':
        text = 'Connecting…';
        // A retry after a failure keeps saying what failed until it succeeds.
        ui.welcomeStatus.textContent = connectError() ? `${connectError()} Trying again…` : 'Connecting…';
        break;
      case 'stalled':
        text = 'Connecting…';
        problem = `Connected to the natter server at ${location.host}, but it has not greeted this page in ${GREET_WAIT / 1000} s. Still waiting…`;
        banner = problem;
        ui.welcomeStatus.textContent = problem;
        break;
      case 'greeted':
        text = 'Connected';
        ui.welcomeStatus.textContent = state.wanted ? 'Connected. Taking your name…' : 'Connected.';
        ui.nameSubmit.disabled = false;
        break;
      case 'registered':
        text = `Connected as ${state.me}`;
        break;
      case 'waiting': {
        const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
        const again = s > 0 ? ` in ${s} s` : '';
        const why = connectError();
        text = 'Reconnecting…';
        banner = `Connection lost.${why ? ` ${why}` : ''} Reconnecting${again}…`;
        action = ['Reconnect now', reconnectNow];
        problem = `${why || `Lost the connection to the natter server at ${location.host}.`} Trying again${again}…`;
        ui.welcomeStatus.textContent = problem;
        break;
      }
      case 'quit':
        text = 'Disconnected';
        banner = 'You left the chat.';
        action = ['Connect again', reconnectNow];
        break;
      case 'idle':
        text = 'Disconnected';
        banner = 'Disconnected after a while without activity.';
        action = ['Reconnect', reconnectNow];
        ui.welcomeStatus.textContent = 'Disconnected while waiting; press Join to connect again.';
        break;
      default:
        break;
    }
    if (what !== 'waiting') clearInterval(state.countdownTimer);
    ui.welcomeStatus.classList.toggle('problem', !!problem || (what === 'connecting' && !!connectError()));
    ui.conn.textContent = text;
    ui.conn.dataset.state = what;
    document.body.dataset.conn = what;
    if (banner && state.registeredOnce) {
      ui.banner.hidden = false;
      ui.bannerText.textContent = banner;
      ui.bannerAction.hidden = !action;
      if (action) {
        ui.bannerAction.textContent = action[0];
        ui.bannerAction.onclick = action[1];
      }
    } else {
      ui.banner.hidden = true;
    }
  }

  /**
   * Why the page could not get connected, in a sentence, or null if the last connection was
   * greeted (then it was lost, which the status says). The browser tells little: a connection
   * that failed (refused, unreachable, a proxy's error) is the same close code 1006 to it.
   */
  function connectError() {
    const end = state.lastEnd;
    const host = location.host;
    if (!end || end.greeted) return null;
    if (end.bye) return `The natter server at ${host} turned the connection away: ${sentence(end.bye)}`;
    if (!end.opened) return `Cannot reach the natter server at ${host}: the browser could not open a connection to it. Is the server running?`;
    const why = end.reason ? `: ${sentence(end.reason)}` : `${end.code && end.code !== 1006 ? ` (code ${end.code})` : ''}.`;
    return `The natter server at ${host} closed the connection before greeting this page${why}`;
  }

  /** A server error text as a sentence: capital first letter, a full stop. */
  function sentence(text) {
    const t = (text || '').trim();
    if (!t) return '';
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?]$/.test(s) ? s : `${s}.`;
  }

  /** What the page tried and the server's reason, as one sentence: "Could not join #a: why." */
  function because(what, why) {
    const t = (why || '').trim();
    if (!t) return `${what}.`;
    return /[.!?]$/.test(t) ? `${what}: ${t}` : `${what}: ${t}.`;
  }

  function showWelcome(error, { password = null, account = null } = {}) {
    ui.welcome.hidden = false;
    ui.app.hidden = true;
    ui.accountError.textContent = account || '';
    if (account !== null) {
      ui.accountPassword.setAttribute('aria-invalid', 'true');
      ui.accountPassword.value = '';
      ui.nameSubmit.disabled = false;
      ui.accountPassword.focus();
      return;
    }
    ui.nameError.textContent = error || '';
    ui.nameInput.setAttribute('aria-invalid', error ? 'true' : 'false');
    ui.nameSubmit.disabled = false;
    if (password !== null) {
      ui.passwordRow.hidden = false;
      ui.passwordError.textContent = password;
      ui.passwordInput.setAttribute('aria-invalid', 'true');
      ui.passwordInput.value = '';
      ui.passwordInput.focus();
      return;
    }
    ui.nameInput.focus();
    ui.nameInput.select();
  }

  // ---------------------------------------------------------------- notifications

  function initNotifications() {
    if (!('Notification' in window)) {
      ui.notifyToggle.disabled = true;
      ui.notifyToggle.parentElement.title = 'This browser cannot show notifications';
      return;
    }
    let saved = false;
    try { saved = localStorage.getItem('natter.notify') === '1'; } catch (e) { /* off */ }
    state.notify = saved && Notification.permission === 'granted';
    ui.notifyToggle.checked = state.notify;
    ui.notifyToggle.addEventListener('change', async () => {
      if (!ui.notifyToggle.checked) {
        state.notify = false;
      } else {
        let perm = Notification.permission;
        if (perm === 'default') {
          try { perm = await Notification.requestPermission(); } catch (e) { perm = 'denied'; }
        }
        state.notify = perm === 'granted';
        ui.notifyToggle.checked = state.notify;
        if (!state.notify) systemHere('Notifications are blocked for this page in your browser settings.', 'error');
      }
      try { localStorage.setItem('natter.notify', state.notify ? '1' : '0'); } catch (e) { /* off */ }
    });
  }

  /** A message just arrived for the person (a DM, or their name said): tell them, unless muted. */
  function alertFor(c, li, from, text) {
    // Their message is what they were typing.
    stoppedTyping(c, from);
    if (!li || li.classList.contains('own') || isMuted(c)) return;
    if (c.kind === 'dm') notify(c, `natter: message from ${from}`, text);
    else if (li.classList.contains('mention')) notify(c, `natter: ${from} mentioned you in ${c.title}`, text);
  }

  /** A desktop notification while the tab is hidden, if the person asked for them. */
  function notify(c, title, body) {
    if (!state.notify || !document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
    try {
      // One per conversation at a time: a newer one replaces the older.
      const n = new Notification(title, { body, tag: `natter-${c.key}` });
      n.onclick = () => {
        window.focus();
        openConversation(c.key);
        n.close();
      };
    } catch (e) {
      // Some browsers allow notifications only from a service worker; the badge still counts.
    }
  }

  // ---------------------------------------------------------------- mentions and muting

  /** The characters a name may hold: a mention is the name with none of these beside it. */
  const NAME_CHARS = 'A-Za-z0-9\\[\\]\\\\`_^{|}\\-';
  let mentionRe = { name: null, re: null };

  /**
   * Whether a text says the page's name as a word, in any case: "Pia:", "@pia" and "hi PIA!"
   * do, "pianist" and "pia-bot" (another name) do not. Without the u flag, the i flag folds
   * no other character into an ASCII letter, so this ignores case as names do.
   */
  function mentionsMe(text) {
    if (!state.me) return false;
    if (mentionRe.name !== state.me) {
      const escaped = state.me.replace(/[\\^$.*+?()[\]{}|-]/g, '\\$&');
      mentionRe = { name: state.me, re: new RegExp(`(?:^|[^${NAME_CHARS}])${escaped}(?![${NAME_CHARS}])`, 'i') };
    }
    return mentionRe.re.test(text);
  }

  /** How many of a conversation's unread messages are for the person: a DM's all, else mentions. */
  function loudCount(c) {
    if (isMuted(c)) return 0;
    return c.kind === 'dm' ? c.unread : c.mentions;
  }

  function markRead(c) {
    c.unread = 0;
    c.mentions = 0;
  }

  /** An unread count: red when some are for the person, grey when the conversation is muted. */
  function badgeFor(c) {
    const badge = el('span', 'badge', String(c.unread));
    if (isMuted(c)) badge.classList.add('quiet');
    else if (loudCount(c)) badge.classList.add('mention');
    return badge;
  }

  function muteMark() {
    const mark = el('span', 'mute-mark');
    mark.setAttribute('aria-hidden', 'true');
    mark.title = 'Muted';
    return mark;
  }

  const isMuted = (c) => state.muted.has(c.key);

  function loadMuted() {
    try {
      const keys = JSON.parse(localStorage.getItem('natter.muted') || '[]');
      return new Set(Array.isArray(keys) ? keys.filter((k) => typeof k === 'string') : []);
    } catch (e) { return new Set(); }
  }

  function saveMuted() {
    try { localStorage.setItem('natter.muted', JSON.stringify([...state.muted])); } catch (e) { /* off */ }
  }

  function toggleMute() {
    const c = state.convs.get(state.active) || everyone;
    if (!state.muted.delete(c.key)) state.muted.add(c.key);
    saveMuted();
    renderMute(c);
    renderNav();
    updateTitle();
  }

  /** The header's mute button: a toggle (aria-pressed) named after the conversation shown. */
  function renderMute(c) {
    const muted = isMuted(c);
    const name = c.kind === 'dm' ? `@ ${c.title}` : c.title;
    ui.muteButton.setAttribute('aria-pressed', String(muted));
    ui.muteButton.setAttribute('aria-label', `Mute ${name}`);
    ui.muteButton.title = muted
      ? `${name} is muted: no notifications, and its unread count stays grey. Click to unmute.`
      : `Mute ${name}: no notifications, and its unread count stays grey`;
    ui.muteText.textContent = muted ? 'Muted' : 'Mute';
  }

  // ---------------------------------------------------------------- typing

  /** How long someone shows as typing without a word from them (IRCv3 says 6 s). */
  const TYPING_SHOWN_MS = 6000;
  /** How often we say we are still typing (IRCv3: at most every 3 s). */
  const TYPING_EVERY_MS = 3000;
  /** What we last told, and when, about the conversation we write in. */
  const ourTyping = { key: null, at: 0 };
  let typingTimer = null;

  /** Tells the others we type in the active conversation, or stopped (`done`). */
  function typed() {
    const c = state.convs.get(state.active) || everyone;
    const text = ui.input.value;
    if (!state.connected || !state.me || (c.kind === 'room' && !c.joined)) return;
    const writing = text.trim() !== '' && !text.startsWith('/');
    if (writing && (ourTyping.key !== c.key || Date.now() - ourTyping.at >= TYPING_EVERY_MS)) {
      // A `done` before a repeated `active` would flicker the watchers' typing line.
      if (ourTyping.key !== c.key) stopOurTyping();
      ourTyping.key = c.key;
      ourTyping.at = Date.now();
      send(`TYPING ${targetOf(c)} active`, 'TYPING', { fail: () => {} });
    } else if (!writing) {
      stopOurTyping();
    }
  }

  /** Says `done` where we last said we were typing, if we did. */
  function stopOurTyping() {
    const c = ourTyping.key && state.convs.get(ourTyping.key);
    ourTyping.key = null;
    if (c && state.connected && state.me) send(`TYPING ${targetOf(c)} done`, 'TYPING', { fail: () => {} });
  }

  /** `TYPING <where> <from> <state>`: someone else typing, pausing or done. */
  function onTyping(rest) {
    const [where, r2] = split(rest);
    const [from, what] = split(r2 ?? '');
    if (!from || isMe(from)) return;
    const key = where === '*' ? everyone.key : where.startsWith('#') ? roomKey(where) : dmKey(where);
    const c = state.convs.get(key);
    if (!c) return;
    c.typing ??= new Map();
    if (what === 'active') c.typing.set(fold(from), { name: from, until: Date.now() + TYPING_SHOWN_MS });
    else c.typing.delete(fold(from));
    if (state.active === c.key) renderTyping();
  }

  function stoppedTyping(c, from) {
    if (c.typing?.delete(fold(from)) && state.active === c.key) renderTyping();
  }

  /** The line above the message box: who is typing here now. */
  function renderTyping() {
    const c = state.convs.get(state.active) || everyone;
    const now = Date.now();
    const names = [];
    for (const [k, t] of c.typing ?? []) {
      if (t.until <= now) c.typing.delete(k);
      else names.push(t.name);
    }
    names.sort((a, b) => fold(a).localeCompare(fold(b)));
    ui.typing.textContent = names.length === 0 ? ''
      : names.length === 1 ? `${names[0]} is typing…`
        : names.length <= 3 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`
          : `${names.length} people are typing…`;
    // Someone shown stops showing when their time runs out, even if nothing else happens.
    clearTimeout(typingTimer);
    typingTimer = names.length ? setTimeout(renderTyping, 1000) : null;
  }

  // ---------------------------------------------------------------- search

  const resultFmt = new Intl.DateTimeFormat(LOCALES, { dateStyle: 'medium', timeStyle: 'short' });

  /** How a target is named in the page: Everyone, #room, @ name. */
  function targetLabel(target) {
    if (target === '*') return 'Everyone';
    return target.startsWith('#') ? target : `@ ${target}`;
  }

  /**
   * The words as SEARCH should get them. Searching everywhere, words ending in "in <word>"
   * would be read as IN <target>: every word must match in any order, so the last one goes first.
   */
  function searchWords(words, here) {
    const parts = words.split(/\s+/);
    if (!here && parts.length > 2 && parts[parts.length - 2].toLowerCase() === 'in') {
      parts.unshift(parts.pop());
    }
    return parts.join(' ');
  }

  /** The panel stays open beside the conversation: its "Only in" follows the one shown. */
  function renderSearchScope() {
    const c = state.convs.get(state.active) || everyone;
    ui.searchHereLabel.textContent = `Only in ${c.kind === 'dm' ? `@ ${c.title}` : c.title}`;
  }

  function openSearch() {
    renderSearchScope();
    // Not modal: a panel over the side, so the conversation stays in view beside the results.
    if (!ui.searchDialog.open) ui.searchDialog.show();
    ui.searchInput.focus();
    ui.searchInput.select();
  }

  function search() {
    const words = ui.searchInput.value.trim();
    if (!words) {
      ui.searchStatus.textContent = 'Type the words to find.';
      return;
    }
    const c = state.convs.get(state.active) || everyone;
    const here = ui.searchHere.checked;
    const rows = [];
    ui.searchResults.replaceChildren();
    ui.searchStatus.textContent = 'Searching…';
    send(`SEARCH ${searchWords(words, here)}${here ? ` IN ${targetOf(c)}` : ''}`, 'SEARCH', {
      data: (kind, rest) => {
        const m = kind === 'LOGGED' ? parseLogged(rest) : null;
        if (m) rows.push(m);
      },
      ok: () => {
        const n = rows.length;
        ui.searchStatus.textContent = n ? `${n} message${n === 1 ? '' : 's'}, newest first` : 'No messages found.';
        ui.searchResults.replaceChildren(...rows.map(resultItem));
      },
      fail: (code, why) => {
        ui.searchStatus.textContent = code === 'NO_HISTORY' ? 'There is no history to search here.' : sentence(why);
      },
    });
  }

  /** One result: where, who, when and what; choosing it opens the conversation there. */
  function resultItem(m) {
    const li = el('li', 'result');
    const b = el('button', 'result-button');
    b.type = 'button';
    const head = el('span', 'result-head');
    const t = el('time', 'time', resultFmt.format(m.at));
    t.dateTime = m.at.toISOString();
    t.title = fullFmt.format(m.at);
    head.append(el('span', 'result-target', targetLabel(m.target)), el('span', 'from', m.from), t);
    const me = m.text.startsWith('/me ') && m.text.length > 4;
    b.append(head, richText('span', 'text', me ? `* ${m.from} ${m.text.slice(4)}` : m.text, { phrasing: true }));
    b.addEventListener('click', () => {
      ui.searchDialog.close();
      openResult(m);
    });
    li.append(b);
    return li;
  }

  function openResult(m) {
    let c;
    if (m.target === '*') c = everyone;
    else if (m.target.startsWith('#')) c = conv(roomKey(m.target), 'room', m.target);
    else c = conv(dmKey(m.target), 'dm', m.target);
    renderNav();
    showConversation(c.key);
    reveal(c, m.id);
  }

  // ---------------------------------------------------------------- slash commands

  const HELP = [
    '/dm name text — send a direct message',
    '/join #room [key] — join (or create) a room; the key if it has one',
    '/part [#room] [reason] — leave this room (or the one named)',
    '/topic [text] — show or set this room\'s topic',
    '/who — members of this room',
    '/rooms — list the rooms',
    '/list — who is online',
    '/name newname — change your name',
    '/me text — say it as an action',
    '/kick name [reason] — remove someone from this room (operators)',
    '/mode [+x [arg]] — show this room\'s modes, or change one (operators): +i, +k key, +l n, +m, +s, +t, +n',
    '/op, /deop, /voice, /devoice name — make someone an operator, or let them speak in a moderated room (operators)',
    '/ban name or mask, /unban — keep someone out of this room, by account if they have one (operators)',
    '/bans — this room\'s ban list',
    '/invite name — invite someone into this room',
    '/help — this list, then the server\'s',
    '/quit — leave the chat',
    '//text — send a message that starts with /',
    'Keys: Enter sends · Shift+Enter a new line · Ctrl+K jump to a conversation · Alt+↑/↓ the one above/below · ↑ in an empty box: what you sent · Esc closes',
  ];

  function currentRoom(cmd) {
    const c = state.convs.get(state.active);
    if (c && c.kind === 'room' && c.joined) return c;
    systemHere(`${cmd} works in a room you are in.`, 'error');
    return null;
  }

  /** Handles what was typed; returns true if the input can be cleared. */
  function submit(typed) {
    if (!typed.trim()) return false;
    if (!typed.startsWith('/') || typed.startsWith('//')) {
      return sendText(typed.startsWith('//') ? typed.slice(1) : typed);
    }
    const [cmdRaw, argsRaw] = split(typed.slice(1));
    const cmd = cmdRaw.toLowerCase();
    const args = (argsRaw ?? '').replace(/^ +/, '');
    if (cmd === 'me') {
      if (!args.trim()) { systemHere('Usage: /me text', 'error'); return false; }
      return sendText(`/me ${args}`);
    }
    // A command is one line; only what /dm sends may have more.
    const [head] = split(args);
    if (/[\r\n]/.test(cmd === 'dm' || cmd === 'msg' ? `${cmdRaw} ${head}` : typed)) {
      systemHere('A command takes one line: Shift+Enter makes new lines in messages only.', 'error');
      return false;
    }
    if (!state.connected || !state.me) {
      systemHere('Not connected yet; try again in a moment.', 'error');
      return false;
    }
    switch (cmd) {
      case 'dm':
      case 'msg': {
        const [to, text] = split(args);
        if (!to || !text || !text.trim()) { systemHere('Usage: /dm name text', 'error'); return false; }
        if (state.me && fold(to) === fold(state.me)) { systemHere('You cannot DM yourself.', 'error'); return false; }
        const c = conv(dmKey(to), 'dm', state.users.get(fold(to)) || to);
        showConversation(c.key);
        return sendText(text);
      }
      case 'join':
      case 'j': {
        const [room, key] = split(args.trim());
        if (!room) { systemHere('Usage: /join #room [key]', 'error'); return false; }
        joinRoom(room, { key: key?.trim() || null });
        return true;
      }
      case 'part':
      case 'leave': {
        let [room, reason] = split(args.trim());
        let c;
        if (room && room.startsWith('#')) {
          c = state.convs.get(roomKey(room));
          if (!c || !c.joined) { systemHere(`You are not in ${room}.`, 'error'); return false; }
        } else {
          reason = args.trim() || null;
          c = currentRoom('/part');
          if (!c) return false;
        }
        partRoom(c, reason);
        return true;
      }
      case 'topic': {
        const c = currentRoom('/topic');
        if (!c) return false;
        if (args.trim()) setTopic(c, args);
        else queryTopic(c);
        return true;
      }
      case 'who': {
        const c = currentRoom('/who');
        if (!c) return false;
        who(c);
        return true;
      }
      case 'rooms':
        listRooms((rooms, error) => {
          if (error) return systemHere(sentence(error), 'error');
          if (!rooms.length) return systemHere('No rooms yet. /join #name creates one.', 'event');
          systemHere(`Rooms (${rooms.length}):`, 'event');
          for (const r of rooms) {
            const members = `${r.room} — ${r.count} member${r.count === 1 ? '' : 's'}`;
            systemHere(r.topic ? [members, ' — ', said(r.topic)] : members, 'event');
          }
          return undefined;
        });
        return true;
      case 'list':
      case 'users':
        refreshUsers(true);
        return true;
      case 'name':
      case 'nick': {
        const name = args.trim();
        if (!name) { systemHere('Usage: /name newname', 'error'); return false; }
        register(name);
        return true;
      }
      case 'kick': {
        const c = currentRoom('/kick');
        if (!c) return false;
        const [user, reason] = split(args.trim());
        if (!user) { systemHere('Usage: /kick name [reason]', 'error'); return false; }
        send(reason ? `KICK ${c.title} ${user} ${reason}` : `KICK ${c.title} ${user}`, 'KICK', {
          fail: (code, why) => system(c, because(`Could not remove ${user}`, why), 'error'),
        });
        return true;
      }
      case 'mode': {
        const c = currentRoom('/mode');
        if (!c) return false;
        const [change, arg] = split(args.trim());
        if (!change) {
          send(`MODE ${c.title}`, 'MODE', {
            ok: (detail) => {
              const [, modes] = split(detail);
              c.modes = parseModes(modes ?? '+');
              renderRoom(c);
              system(c, `The modes of ${c.title}: ${modes ?? '+'}`, 'event');
            },
            fail: (code, why) => system(c, sentence(why), 'error'),
          });
          return true;
        }
        if (!/^[+-]/.test(change)) {
          systemHere('Usage: /mode [+x [arg]], as in /mode +m or /mode +l 20', 'error');
          return false;
        }
        setMode(c, change, arg?.trim() || null, `change the modes of ${c.title} (${args.trim()})`);
        return true;
      }
      case 'op':
      case 'deop':
      case 'voice':
      case 'devoice': {
        const c = currentRoom(`/${cmd}`);
        if (!c) return false;
        const name = args.trim();
        if (!name || /\s/.test(name)) { systemHere(`Usage: /${cmd} name`, 'error'); return false; }
        const change = { op: '+o', deop: '-o', voice: '+v', devoice: '-v' }[cmd];
        setMode(c, change, name, `change the modes of ${c.title} (${change} ${name})`);
        return true;
      }
      case 'ban':
      case 'unban': {
        const c = currentRoom(`/${cmd}`);
        if (!c) return false;
        const who = args.trim();
        if (!who || /\s/.test(who)) { systemHere(`Usage: /${cmd} name or mask`, 'error'); return false; }
        const mask = /^\$|[!@*?]/.test(who);
        if (cmd === 'ban') {
          setMode(c, '+b', mask ? who : banMask(who), `ban ${who}`);
        } else if (mask) {
          setMode(c, '-b', who, `lift the ban on ${who}`);
        } else {
          // A name may be banned by name or by account: both are lifted (lifting a ban that
          // is not there changes nothing), and a refusal is said once.
          setMode(c, '-b', `${who}!*@*`, `lift the ban on ${who}`);
          send(`MODE ${c.title} -b $a:${who}`, 'MODE', { fail: () => {} });
        }
        return true;
      }
      case 'bans': {
        const c = currentRoom('/bans');
        if (!c) return false;
        openBans(c);
        return true;
      }
      case 'invite': {
        const c = currentRoom('/invite');
        if (!c) return false;
        const name = args.trim();
        if (!name || /\s/.test(name)) { systemHere('Usage: /invite name', 'error'); return false; }
        send(`INVITE ${c.title} ${name}`, 'INVITE', {
          ok: (detail) => system(c, `You invited ${split(detail)[1] || name} to ${c.title}.`, 'event'),
          fail: (code, why) => system(c, because(`Could not invite ${name}`, why), 'error'),
        });
        return true;
      }
      case 'help': {
        for (const h of HELP) systemHere(h, 'event help');
        const lines = [];
        send(args.trim() ? `HELP ${args.trim()}` : 'HELP', 'HELP', {
          data: (kind, rest) => { if (kind === 'HELP') lines.push(rest); },
          ok: () => {
            if (lines.length) systemHere('The server\'s commands (what the page sends for you):', 'event help');
            for (const l of lines) systemHere(l, 'event help mono');
          },
          fail: (code, why) => systemHere(sentence(why), 'error'),
        });
        return true;
      }
      case 'quit':
      case 'close':
        state.quit = true;
        saveSession(null);
        send('CLOSE', 'CLOSE');
        return true;
      default:
        systemHere(`Unknown command /${cmdRaw}; type /help for the list.`, 'error');
        return false;
    }
  }

  // ---------------------------------------------------------------- keyboard
  //
  // As in Slack and The Lounge: Up in an empty message box brings back what was last sent (Up
  // again, older; Down, newer), Alt+Up and Alt+Down go to the conversation above or below in
  // the side bar, Ctrl+K (Cmd+K) opens a box to jump to any conversation by name, and Esc
  // closes what is open.

  const RECALL_MAX = 100;

  /** Keeps what was sent (a message or a command) for Up to bring back. */
  function remember(typed) {
    const r = state.recall;
    if (r.items[r.items.length - 1] !== typed) r.items.push(typed);
    if (r.items.length > RECALL_MAX) r.items.shift();
    r.at = null;
  }

  /**
   * Up and Down in the message box walk through what was sent, as long as the box is empty or
   * still shows what was recalled: once the person edits it, the arrows are theirs again.
   */
  function recallKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey || e.isComposing) return;
    if (e.key !== 'ArrowUp' && e.key !== 'ArrowDown') return;
    const r = state.recall;
    const value = ui.input.value;
    const browsing = r.at !== null && value === r.items[r.at];
    if (!browsing && value !== '') return;
    // In a recalled text of several lines the arrows move between its lines first.
    const caret = ui.input.selectionStart;
    if (browsing && e.key === 'ArrowUp' && value.lastIndexOf('\n', caret - 1) >= 0) return;
    if (browsing && e.key === 'ArrowDown' && value.indexOf('\n', caret) >= 0) return;
    let at = browsing ? r.at : r.items.length;
    at += e.key === 'ArrowUp' ? -1 : 1;
    if (at < 0 || (!browsing && e.key === 'ArrowDown')) return;
    e.preventDefault();
    r.at = at < r.items.length ? at : null;
    ui.input.value = r.at === null ? '' : r.items[r.at];
    const end = ui.input.value.length;
    ui.input.setSelectionRange(end, end);
    fitComposer();
  }

  /**
   * The message box: Enter sends, Shift+Enter makes a new line (a paste keeps its lines). Not
   * while an input method is composing: its Enter chooses the characters.
   */
  function composerKey(e) {
    if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.isComposing) return;
    e.preventDefault();
    ui.composer.requestSubmit();
  }

  /** The message box grows with its lines, up to a few (CSS max-height), then scrolls. */
  function fitComposer() {
    const box = ui.input;
    // Empty, it is one line high, however long its placeholder (narrow screens wrap it).
    if (!box.value) {
      box.style.height = '';
      return;
    }
    box.style.height = 'auto';
    const borders = box.offsetHeight - box.clientHeight;
    box.style.height = `${box.scrollHeight + borders}px`;
  }

  /** The conversations in the side bar's order, as their keys. */
  function sidebarOrder() {
    return [...ui.sidebar.querySelectorAll('button.conv')].map((b) => b.dataset.conv);
  }

  /** Alt+Up, Alt+Down: the conversation above or below the one shown, round the ends. */
  function stepConversation(by) {
    const keys = sidebarOrder();
    if (!keys.length) return;
    const i = keys.indexOf(state.active);
    const next = i < 0 ? (by > 0 ? 0 : keys.length - 1) : (i + by + keys.length) % keys.length;
    openConversation(keys[next]);
  }

  function onShortcut(e) {
    if (ui.app.hidden) return;
    // A modal dialog (rooms, account, the jump box) has the keyboard; Esc closes it natively.
    const modal = ui.roomsDialog.open || ui.accountDialog.open || ui.switcher.open
      || ui.askDialog.open || ui.bansDialog.open;
    if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 'k') {
      e.preventDefault(); // the browser's own Ctrl+K (its search box) is not what is meant here
      if (!ui.switcher.open) openSwitcher();
      return;
    }
    if (modal) return;
    if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
      e.preventDefault();
      stepConversation(e.key === 'ArrowUp' ? -1 : 1);
      return;
    }
    if (e.key === 'Escape' && closeTopmost()) e.preventDefault();
  }

  /** Esc: closes the menu, the side panel, the search panel or the topic box, the one on top. */
  function closeTopmost() {
    if (!ui.menu.hidden) {
      closeMenu();
      return true;
    }
    if (!ui.scrim.hidden) {
      closePanels();
      return true;
    }
    if (ui.searchDialog.open) {
      ui.searchDialog.close();
      ui.searchButton.focus();
      return true;
    }
    if (!ui.topicForm.hidden) {
      ui.topicForm.hidden = true;
      ui.topicButton.focus();
      return true;
    }
    return false;
  }

  // The jump box: every conversation, the people online without one, and a room to join.

  function openSwitcher() {
    closePanels();
    ui.switcherInput.value = '';
    renderSwitcher();
    if (!ui.switcher.open) ui.switcher.showModal();
    ui.switcherInput.focus();
  }

  /** What the jump box offers for its text, best first: [{label, hint, go}]. */
  function switcherChoices(typed) {
    const want = fold(typed.trim().replace(/^@\s*/, ''));
    const all = [];
    for (const key of sidebarOrder()) {
      const c = state.convs.get(key);
      if (!c) continue;
      const hint = c.kind === 'dm' ? 'Direct message' : c.kind === 'room' ? 'Room' : 'Everyone online';
      all.push({ label: c.kind === 'dm' ? `@ ${c.title}` : c.title, name: c.title, hint, conv: c, go: () => openConversation(key) });
    }
    for (const name of [...state.users.values()].sort((a, b) => fold(a).localeCompare(fold(b)))) {
      if (isMe(name) || state.convs.has(dmKey(name))) continue;
      all.push({ label: `@ ${name}`, name, hint: 'Online: start a direct message', go: () => openDm(name) });
    }
    // A typed #room that is not one of ours: offer to join it.
    const room = typed.trim();
    if (/^#\S+$/.test(room) && !all.some((x) => fold(x.name) === fold(room))) {
      all.push({ label: room, name: room, hint: 'Join this room', go: () => joinRoom(room) });
    }
    if (!want) return all;
    // Names that start with the text first, then those that contain it; the side bar's order within.
    const starts = all.filter((x) => fold(x.name).replace(/^#/, '').startsWith(want.replace(/^#/, '')));
    const contains = all.filter((x) => !starts.includes(x) && fold(x.name).includes(want));
    return [...starts, ...contains];
  }

  function renderSwitcher() {
    const choices = switcherChoices(ui.switcherInput.value).slice(0, 12);
    state.switcher = { choices, active: 0 };
    ui.switcherList.replaceChildren(...choices.map((x, i) => {
      const li = el('li', 'switcher-item');
      li.id = `switcher-${i}`;
      li.setAttribute('role', 'option');
      li.append(el('span', 'switcher-label', x.label), el('span', 'switcher-hint', x.hint));
      if (x.conv?.unread) li.append(badgeFor(x.conv));
      li.addEventListener('click', () => chooseSwitcher(i));
      return li;
    }));
    ui.switcherEmpty.hidden = choices.length > 0;
    markSwitcher(0);
  }

  /** Marks the choice Enter would take (the input keeps the focus; aria-activedescendant). */
  function markSwitcher(i) {
    state.switcher.active = i;
    const items = ui.switcherList.children;
    for (let j = 0; j < items.length; j++) items[j].setAttribute('aria-selected', String(j === i));
    if (items[i]) {
      ui.switcherInput.setAttribute('aria-activedescendant', items[i].id);
      items[i].scrollIntoView({ block: 'nearest' });
    } else {
      ui.switcherInput.removeAttribute('aria-activedescendant');
    }
  }

  function switcherKey(e) {
    const n = state.switcher.choices.length;
    if (!n || (e.key !== 'ArrowDown' && e.key !== 'ArrowUp')) return;
    e.preventDefault();
    markSwitcher((state.switcher.active + (e.key === 'ArrowDown' ? 1 : -1) + n) % n);
  }

  function chooseSwitcher(i) {
    const choice = state.switcher.choices[i];
    if (!choice) return;
    ui.switcher.close();
    choice.go();
  }

  // ---------------------------------------------------------------- panels on narrow screens

  function setPanel(which, open) {
    const panel = which === 'nav' ? ui.sidebar : ui.people;
    const button = which === 'nav' ? ui.toggleNav : ui.togglePeople;
    panel.classList.toggle('open', open);
    button.setAttribute('aria-expanded', String(open));
    button.setAttribute('aria-label', `${open ? 'Hide' : 'Show'} ${which === 'nav' ? 'conversations' : 'people'}`);
    const any = ui.sidebar.classList.contains('open') || ui.people.classList.contains('open');
    ui.scrim.hidden = !any;
    updateTitle(); // the menu button's label carries the unread count
  }

  function closePanels() {
    setPanel('nav', false);
    setPanel('people', false);
  }

  // ---------------------------------------------------------------- wiring

  ui.nameForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = ui.nameInput.value.trim();
    if (!name) {
      ui.nameError.textContent = 'Please type a name.';
      ui.nameInput.setAttribute('aria-invalid', 'true');
      ui.nameInput.focus();
      return;
    }
    ui.nameError.textContent = '';
    ui.nameInput.removeAttribute('aria-invalid');
    if (!ui.passwordRow.hidden) {
      const pw = ui.passwordInput.value;
      if (!pw) {
        ui.passwordError.textContent = 'Please type the server password.';
        ui.passwordInput.focus();
        return;
      }
      ui.passwordError.textContent = '';
      ui.passwordInput.removeAttribute('aria-invalid');
      state.password = pw;
    }
    state.secret = ui.accountPassword.value || null;
    ui.accountPassword.value = '';
    ui.accountPassword.removeAttribute('aria-invalid');
    ui.accountError.textContent = '';
    if (!state.ws) reconnectNow();
    register(name);
  });

  // ---------------------------------------------------------------- the account dialog

  function renderAccount() {
    const signedIn = !!state.account && state.me && fold(state.account) === fold(state.me);
    ui.accountState.textContent = signedIn
      ? `Signed in as ${state.me}: this name is yours.`
      : `You are chatting as ${state.me || 'a guest'}, a name anyone may take once you leave.`;
    ui.accountCreate.hidden = signedIn;
    ui.accountManage.hidden = !signedIn;
    ui.accountMessage.textContent = '';
    for (const i of [ui.createPassword, ui.oldPassword, ui.newPassword]) i.value = '';
  }

  function accountFailed(text) {
    ui.accountMessage.textContent = sentence(text);
  }

  ui.accountButton.addEventListener('click', () => {
    renderAccount();
    ui.accountDialog.showModal();
    (ui.accountCreate.hidden ? ui.oldPassword : ui.createPassword).focus();
  });

  $('create-account').addEventListener('click', () => {
    const pw = ui.createPassword.value;
    ui.createPassword.value = '';
    send(`ACCOUNT CREATE ${pw}`, 'ACCOUNT', {
      ok: () => {
        state.account = state.me;
        keepSignedIn(state.me);
        renderAccount();
        ui.accountMessage.textContent = '';
        ui.accountState.textContent = `Signed in as ${state.me}: this name is yours now.`;
        system(everyone, `${state.me} is now your account.`, 'event');
      },
      fail: (code, text) => accountFailed(text),
    });
  });

  $('change-password').addEventListener('click', () => {
    const [old, pw] = [ui.oldPassword.value, ui.newPassword.value];
    ui.oldPassword.value = '';
    ui.newPassword.value = '';
    send(`ACCOUNT PASSWORD ${old} ${pw}`, 'ACCOUNT', {
      // A new password revokes every token, this page's too: take a new one.
      ok: () => { keepSignedIn(state.me); ui.accountState.textContent = 'Password changed.'; },
      fail: (code, text) => accountFailed(text),
    });
  });

  $('delete-account').addEventListener('click', () => {
    const pw = ui.oldPassword.value;
    ui.oldPassword.value = '';
    send(`ACCOUNT DELETE ${pw}`, 'ACCOUNT', {
      ok: () => {
        state.account = null;
        saveToken(null);
        renderAccount();
        ui.accountState.textContent = 'Account deleted: your name is a guest name again.';
      },
      fail: (code, text) => accountFailed(text || 'Enter your current password to delete the account.'),
    });
  });

  $('sign-out').addEventListener('click', () => {
    send('LOGOUT', 'LOGOUT', {
      ok: () => {
        saveToken(null);
        saveSession(null);
        state.account = null;
        state.wanted = null;
        state.me = null;
        ui.accountDialog.close();
        showWelcome(null);
      },
      fail: (code, text) => accountFailed(text),
    });
  });

  ui.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.input.value;
    if (submit(text)) {
      remember(text);
      ui.input.value = '';
      fitComposer();
      // The message says we are done; others clear us when it comes.
      ourTyping.key = null;
    }
    ui.input.focus();
  });
  ui.input.addEventListener('input', typed);
  ui.input.addEventListener('input', fitComposer);
  ui.input.addEventListener('keydown', composerKey);

  ui.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const room = ui.joinInput.value.trim();
    if (!room) return;
    joinRoom(room);
    ui.joinInput.value = '';
  });

  ui.browse.addEventListener('click', openRoomsDialog);
  ui.searchButton.addEventListener('click', openSearch);
  ui.muteButton.addEventListener('click', toggleMute);
  ui.searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    search();
  });
  ui.searchHere.addEventListener('change', () => { if (ui.searchInput.value.trim()) search(); });
  // Scrolled to the top: the page before.
  ui.messages.addEventListener('scroll', () => loadOlderIfAtTop(state.convs.get(state.active) || everyone), { passive: true });
  ui.leaveButton.addEventListener('click', () => {
    const c = state.convs.get(state.active);
    if (c && c.kind === 'room' && c.joined) partRoom(c, null);
  });
  ui.topicButton.addEventListener('click', () => {
    const c = state.convs.get(state.active);
    if (!c || c.kind !== 'room') return;
    ui.topicForm.hidden = !ui.topicForm.hidden;
    if (!ui.topicForm.hidden) {
      ui.topicInput.value = c.topic;
      ui.topicInput.focus();
    }
  });
  ui.roomMenuButton.addEventListener('click', () => {
    const c = state.convs.get(state.active);
    if (!ui.menu.hidden && menuAnchor === ui.roomMenuButton) { closeMenu(); return; }
    if (c && c.kind === 'room' && c.joined) openMenu(ui.roomMenuButton, roomMenu(c));
  });
  ui.menu.addEventListener('keydown', menuKey);
  // A click (or the focus) going elsewhere closes the menu, as menus do.
  document.addEventListener('pointerdown', (e) => {
    if (!ui.menu.hidden && !ui.menu.contains(e.target) && !menuAnchor?.contains(e.target)) closeMenu(false);
  });
  ui.menu.addEventListener('focusout', (e) => {
    const to = e.relatedTarget;
    if (to && !ui.menu.contains(to) && !menuAnchor?.contains(to)) closeMenu(false);
  });
  ui.askForm.addEventListener('submit', (e) => {
    e.preventDefault();
    asking?.submit(ui.askInput.value.trim(), askDone);
  });
  ui.askCancel.addEventListener('click', () => ui.askDialog.close());
  ui.topicCancel.addEventListener('click', () => {
    ui.topicForm.hidden = true;
    ui.topicButton.focus();
  });
  ui.topicForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const c = state.convs.get(state.active);
    if (c && c.kind === 'room') setTopic(c, ui.topicInput.value);
    ui.topicForm.hidden = true;
    ui.input.focus();
  });
  ui.topicForm.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    // This box, not whatever else is open: it has the focus.
    e.stopPropagation();
    ui.topicForm.hidden = true;
    ui.topicButton.focus();
  });

  ui.toggleNav.addEventListener('click', () => setPanel('nav', !ui.sidebar.classList.contains('open')));
  ui.togglePeople.addEventListener('click', () => setPanel('people', !ui.people.classList.contains('open')));
  ui.scrim.addEventListener('click', closePanels);
  document.addEventListener('keydown', onShortcut);
  ui.input.addEventListener('keydown', recallKey);
  ui.jumpButton.addEventListener('click', openSwitcher);
  ui.switcherInput.addEventListener('input', renderSwitcher);
  ui.switcherInput.addEventListener('keydown', switcherKey);
  ui.switcherForm.addEventListener('submit', (e) => {
    e.preventDefault();
    chooseSwitcher(state.switcher.active);
  });
  // A click beside the box (on the backdrop) closes it, as Esc does.
  ui.switcher.addEventListener('click', (e) => { if (e.target === ui.switcher) ui.switcher.close(); });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      const c = state.convs.get(state.active);
      if (c && c.unread) {
        markRead(c);
        renderNav();
        updateTitle();
      }
    }
  });

  // Coming back online or to the tab: do not wait out the backoff.
  window.addEventListener('online', () => { if (!state.ws && !state.quit) reconnectNow(); });
  // Back after an idle timeout: typing or coming back to the tab reconnects.
  ui.input.addEventListener('focus', wake);
  ui.input.addEventListener('keydown', wake);
  window.addEventListener('focus', wake);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) wake(); });

  try {
    const saved = localStorage.getItem('natter.name');
    if (saved) ui.nameInput.value = saved;
  } catch (e) { /* storage may be off */ }
  // Signed in on an earlier visit: sign in again as soon as the server greets us.
  if (state.token) {
    state.wanted = state.token.name;
    ui.nameInput.value = state.token.name;
    ui.welcomeStatus.textContent = `Signing in as ${state.token.name}…`;
  }

  initNotifications();
  renderNav();
  ui.nameInput.focus();
  // A remembered name is selected: typing another replaces it instead of adding to it.
  ui.nameInput.select();
  connect();

  // For tests and the curious: read-only views of the state.
  window.natter = Object.freeze({
    get name() { return state.me; },
    get connected() { return state.connected; },
    get open() { return state.ws?.readyState === WebSocket.OPEN; }, // greeted or not
    get pending() { return state.pending.length; },
    get account() { return state.account; },
  });
})();
