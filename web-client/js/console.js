// The staff console: sign-in with TOTP; for schedulers the day view, bookings, rooms and join
// links; for security officers live sessions, termination, lockdowns and the audit log.
import { formatTime, formatDuration } from './clock.js';
import { zonedWindow, instantToZoned } from './zones.js';
import { refusalDetails } from './reasons.js';
import { copyField } from './clipboard.js';

const $ = (id) => document.getElementById(id);

const TABS = {
  day: 'Appointments',
  rooms: 'Rooms',
  live: 'Live sessions',
  lockdown: 'Lockdowns',
  audit: 'Audit log',
};
const TABS_BY_ROLE = {
  scheduler: ['day', 'rooms'],
  security: ['live', 'lockdown', 'audit', 'day'],
  admin: ['rooms', 'day'],
};

const SIGNED_OUT = 'You have signed out.';

const state = { csrf: null, staff: null, rooms: [], tab: null, liveTimer: null, audit: { pages: [], next: null }, appointment: null };

class ApiFailure extends Error {
  /** `retryAfter`: whole seconds to wait, when a limit refused the request. */
  constructor(code, message, retryAfter) {
    super(message || 'Something went wrong.');
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Calls the API as the signed-in member of staff, with the CSRF token on every change. */
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    throw new ApiFailure('network', 'The gateway cannot be reached. Check the network and try again.');
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 && state.staff) signedOut('Your session has ended. Sign in again.');
    throw new ApiFailure(data.code, data.message, refusalDetails(response, data).retry_after_s);
  }
  return data;
}

function banner(text, kind = 'info') {
  $('banner').hidden = !text;
  $('banner').textContent = text || '';
  $('banner').dataset.kind = kind;
}

/** Shows the outcome of an action in `el`: a success sentence, or the error's own sentence. */
function report(el, error, success) {
  el.className = error ? 'error-text' : 'success-text';
  el.textContent = error ? error.message : success;
}

function element(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('aria-') || key === 'role' || key === 'scope') el.setAttribute(key, value);
    else if (key === 'onclick') el.addEventListener('click', value);
    else el[key] = value;
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

function button(text, onclick, className = '', label) {
  return element('button', { type: 'button', className, onclick, ...(label ? { 'aria-label': label } : {}) }, text);
}

// --- Sign-in -----------------------------------------------------------------------------------

function signedIn(session) {
  state.csrf = session.csrf_token;
  state.staff = session.staff;
  document.body.dataset.state = 'signed-in';
  document.body.dataset.role = session.staff.role;
  $('signin').hidden = true;
  $('who').hidden = false;
  $('who').textContent = `Signed in as ${session.staff.display_name} (${session.staff.role})`;
  $('sign-out').hidden = false;
  const tabs = TABS_BY_ROLE[session.staff.role] || [];
  $('tabs').hidden = false;
  $('tabs').replaceChildren(...tabs.map((tab) => button(TABS[tab], () => openTab(tab))));
  for (const el of document.querySelectorAll('[data-role="scheduler"]')) el.hidden = session.staff.role !== 'scheduler';
  loadRooms().then(() => openTab(tabs[0]));
}

function signedOut(message) {
  state.csrf = null;
  state.staff = null;
  clearInterval(state.liveTimer);
  document.body.dataset.state = 'signed-out';
  $('signin').hidden = false;
  $('who').hidden = true;
  $('sign-out').hidden = true;
  $('tabs').hidden = true;
  for (const tab of Object.keys(TABS)) $(`tab-${tab}`).hidden = true;
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  $('signin-error').textContent = message || '';
  $('signin-error').className = message === SIGNED_OUT ? 'success-text' : 'error-text';
  $('username').focus();
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = { username: $('username').value.trim(), password: $('password').value };
  if ($('totp').value.trim()) body.totp = $('totp').value.trim();
  try {
    const session = await api('POST', '/api/v1/session', body);
    $('password').value = '';
    $('totp').value = '';
    $('signin-error').textContent = '';
    signedIn(session);
  } catch (error) {
    $('signin-error').textContent = signInRefusal(error);
  }
});

function signInRefusal(error) {
  if (error.code === 'not_authenticated') return 'The username, password or code is not right. Check them and try again.';
  // An account locked after its failures, or an address after its own: the gateway's sentence
  // says which, and when to try again.
  return error.message;
}

$('sign-out').addEventListener('click', async () => {
  try { await api('DELETE', '/api/v1/session'); } catch { /* signed out either way */ }
  signedOut(SIGNED_OUT);
});

function openTab(tab) {
  state.tab = tab;
  clearInterval(state.liveTimer);
  for (const name of Object.keys(TABS)) $(`tab-${name}`).hidden = name !== tab;
  for (const b of $('tabs').querySelectorAll('button')) {
    if (b.textContent === TABS[tab]) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  banner('');
  if (tab === 'day') loadDay();
  if (tab === 'rooms') renderRooms();
  if (tab === 'live') {
    loadLive();
    state.liveTimer = setInterval(loadLive, 5000);
  }
  if (tab === 'lockdown') loadLockdowns();
  if (tab === 'audit') searchAudit();
}

// --- Rooms -------------------------------------------------------------------------------------

async function loadRooms() {
  try {
    state.rooms = await api('GET', '/api/v1/rooms');
  } catch (error) {
    banner(error.message, 'error');
    state.rooms = [];
  }
  const options = () => state.rooms.map((r) => element('option', { value: r.id }, `${r.name} (${r.site})`));
  $('book-room').replaceChildren(...options());
  $('lockdown-room').replaceChildren(...options());
  const sites = [...new Set(state.rooms.map((r) => r.site))];
  $('lockdown-site').replaceChildren(...sites.map((s) => element('option', { value: s }, s)));
}

function roomById(id) {
  return state.rooms.find((r) => r.id === id);
}

function showSecret(title, value) {
  $('credential-title').textContent = title;
  $('credential-value').value = value;
  $('credential-copied').textContent = '';
  $('credential-box').hidden = false;
  $('credential-value').focus();
}

function renderRooms() {
  const canManage = ['scheduler', 'admin'].includes(state.staff.role);
  $('rooms-body').replaceChildren(...state.rooms.map((room) => element('tr', {},
    element('th', { scope: 'row' }, room.name),
    element('td', {}, room.site),
    element('td', {}, room.timezone),
    element('td', {}, room.device_active ? 'Active' : 'Revoked: the kiosk cannot join'),
    element('td', {},
      canManage ? button('Issue new credential', async () => {
        try {
          const issued = await api('POST', `/api/v1/rooms/${room.id}/device`);
          await loadRooms();
          renderRooms();
          showSecret(`New credential for ${room.name}`, issued.device_credential);
        } catch (error) { banner(error.message, 'error'); }
      }, '', `Issue new credential for ${room.name}`) : null,
      canManage && room.device_active ? button('Revoke credential', async () => {
        try {
          await api('DELETE', `/api/v1/rooms/${room.id}/device`);
          await loadRooms();
          renderRooms();
          banner(`${room.name}'s credential was revoked: its kiosk is disconnected.`);
        } catch (error) { banner(error.message, 'error'); }
      }, 'danger', `Revoke credential of ${room.name}`) : null),
  )));
}

$('enrol-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const enrolled = await api('POST', '/api/v1/rooms', {
      site: $('enrol-site').value.trim(), name: $('enrol-name').value.trim(), timezone: $('enrol-tz').value.trim(),
    });
    report($('enrol-result'), null, `${enrolled.room.name} is enrolled.`);
    await loadRooms();
    renderRooms();
    showSecret(`Credential for ${enrolled.room.name}`, enrolled.device_credential);
  } catch (error) {
    report($('enrol-result'), error);
  }
});
$('credential-copy').addEventListener('click', () => copyField($('credential-value'), $('credential-copied')));

// --- The day view ------------------------------------------------------------------------------

function today() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
}

function shiftDay(days) {
  const d = new Date(`${$('day-date').value || today()}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  $('day-date').value = d.toISOString().slice(0, 10);
  loadDay();
}

const STATUS_TEXT = { booked: 'Booked', open: 'Open now', ended: 'Ended', cancelled: 'Cancelled', terminated: 'Ended by security' };

async function loadDay() {
  if (!$('day-date').value) $('day-date').value = today();
  if (!$('book-date').value) $('book-date').value = $('day-date').value;
  const day = $('day-date').value;
  // Wide enough for every time zone; each room keeps the ones on its own calendar day.
  const from = new Date(Date.parse(`${day}T00:00:00Z`) - 14 * 3600e3).toISOString();
  const to = new Date(Date.parse(`${day}T00:00:00Z`) + 38 * 3600e3).toISOString();
  let appointments;
  try {
    appointments = await api('GET', `/api/v1/appointments?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&limit=1000`);
  } catch (error) {
    $('day-status').textContent = error.message;
    return;
  }
  const columns = state.rooms.map((room) => {
    const mine = appointments
      .filter((a) => a.room.id === room.id && instantToZoned(a.start, room.timezone).date === day)
      .sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
    return element('section', { className: 'room-column', 'aria-label': `${room.name}, ${day}` },
      element('h3', {}, `${room.name}`),
      element('p', { className: 'hint' }, `${room.site} · times in ${room.timezone}`),
      mine.length ? null : element('p', {}, 'Nothing booked.'),
      ...mine.map((a) => element('article', { className: 'appointment', dataset: { status: a.status, id: a.id } },
        element('p', {}, element('strong', {}, `${formatTime(a.start, room.timezone)}–${formatTime(a.end, room.timezone)}`), ` · ${STATUS_TEXT[a.status] || a.status}`),
        element('p', {}, `${a.clinician.name} · ${a.patient_pseudonym}`),
        a.status_reason ? element('p', { className: 'hint' }, `Reason: ${a.status_reason}`) : null,
        button('Open', () => openAppointment(a.id), '', `Open the ${formatTime(a.start, room.timezone)} appointment in ${room.name}`))));
  });
  $('day-view').replaceChildren(...columns);
  $('day-status').textContent = `${appointments.length} appointment(s) around ${day}.`;
}

$('day-date').addEventListener('change', loadDay);
$('day-prev').addEventListener('click', () => shiftDay(-1));
$('day-next').addEventListener('click', () => shiftDay(1));
$('day-refresh').addEventListener('click', loadDay);

$('book-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const room = roomById($('book-room').value);
  if (!room) {
    report($('book-result'), new Error('Enrol a room first.'));
    return;
  }
  const date = $('book-date').value;
  const body = {
    room_id: room.id,
    ...zonedWindow(date, $('book-start').value, $('book-end').value, room.timezone),
    clinician: { name: $('book-clinician').value.trim(), email: $('book-email').value.trim() },
    patient_pseudonym: $('book-patient').value.trim(),
    escort_name: $('book-escort').value.trim(),
    guests: $('book-interpreter').value.trim() ? [{ name: $('book-interpreter').value.trim(), kind: 'interpreter' }] : [],
  };
  try {
    const booked = await api('POST', '/api/v1/appointments', body);
    report($('book-result'), null, `Booked ${room.name} at ${formatTime(booked.start, room.timezone)}. Now issue the join link.`);
    $('day-date').value = date;
    await loadDay();
    openAppointment(booked.id);
  } catch (error) {
    report($('book-result'), error);
  }
});

// --- One appointment: links, reschedule, cancel ------------------------------------------------

async function openAppointment(id) {
  const dialog = $('appointment-dialog');
  $('issued-box').hidden = true;
  $('appointment-result').textContent = '';
  try {
    const a = await api('GET', `/api/v1/appointments/${id}`);
    state.appointment = a;
    renderAppointment(a);
    await renderLinks(a);
  } catch (error) {
    banner(error.message, 'error');
    return;
  }
  if (!dialog.open) dialog.showModal();
}

function renderAppointment(a) {
  const tz = a.room.timezone;
  const local = instantToZoned(a.start, tz);
  $('appointment-title').textContent = `${a.room.name}, ${formatTime(a.start, tz)}–${formatTime(a.end, tz)} on ${local.date}`;
  $('appointment-facts').replaceChildren(
    element('p', {}, `Status: ${STATUS_TEXT[a.status] || a.status}${a.status_reason ? ` (${a.status_reason})` : ''}`),
    element('p', {}, `Clinician: ${a.clinician.name} <${a.clinician.email}>`),
    element('p', {}, `Patient: ${a.patient_pseudonym} · Escort: ${a.escort_name}`),
    element('p', {}, `Joining opens ${formatTime(a.window.opens, tz)}; the session ends for everyone by ${formatTime(a.window.hard_end, tz)}.`),
  );
  const editable = state.staff.role === 'scheduler' && (a.status === 'booked' || a.status === 'open');
  $('reschedule-form').hidden = !editable;
  $('cancel-form').hidden = !editable;
  $('reschedule-date').value = local.date;
  $('reschedule-start').value = local.time;
  $('reschedule-end').value = instantToZoned(a.end, tz).time;
}

async function renderLinks(a) {
  const scheduler = state.staff.role === 'scheduler';
  const links = await api('GET', `/api/v1/appointments/${a.id}/links`);
  const people = [{ id: a.clinician.id, name: a.clinician.name, kind: 'clinician' }, ...a.guests.map((g) => ({ id: g.id, name: g.name, kind: g.kind }))];
  $('links').replaceChildren(...people.map((person) => {
    const current = links.filter((l) => l.participant_id === person.id && !l.revoked_at).pop();
    const status = current
      ? `Link issued ${formatTime(current.issued_at)}${current.used ? ', opened in a browser' : ', not opened yet'}`
      : 'No link';
    return element('div', { className: 'form-row' },
      element('p', {}, element('strong', {}, `${person.name} (${person.kind})`), `: ${status}`),
      scheduler && a.status !== 'cancelled' ? button(current ? 'Reissue link' : 'Issue link', () => issueLink(a, person), 'primary', `${current ? 'Reissue link' : 'Issue link'} for ${person.name}`) : null,
      scheduler && current ? button('Revoke link', () => revokeLink(a, current, person), 'danger', `Revoke link of ${person.name}`) : null);
  }));
}

async function issueLink(a, person) {
  try {
    const issued = await api('POST', `/api/v1/appointments/${a.id}/links`, { participant_id: person.id });
    $('issued-label').textContent = `Join link for ${person.name}`;
    $('issued-url').value = issued.url;
    $('issued-copied').textContent = '';
    $('issued-box').hidden = false;
    await renderLinks(a);
    $('issued-url').focus();
  } catch (error) {
    report($('appointment-result'), error);
  }
}

async function revokeLink(a, link, person) {
  try {
    await api('DELETE', `/api/v1/links/${link.id}`);
    $('issued-box').hidden = true;
    report($('appointment-result'), null, `${person.name}'s link was revoked.`);
    await renderLinks(a);
  } catch (error) {
    report($('appointment-result'), error);
  }
}

$('issued-copy').addEventListener('click', () => copyField($('issued-url'), $('issued-copied')));
$('appointment-close').addEventListener('click', () => $('appointment-dialog').close());
$('appointment-dialog').addEventListener('close', () => { if (state.tab === 'day') loadDay(); });

$('reschedule-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const a = state.appointment;
  const tz = a.room.timezone;
  const date = $('reschedule-date').value;
  try {
    const moved = await api('POST', `/api/v1/appointments/${a.id}/reschedule`,
      zonedWindow(date, $('reschedule-start').value, $('reschedule-end').value, tz));
    state.appointment = moved;
    renderAppointment(moved);
    // The day view follows the appointment to its new day, as it does a new booking.
    $('day-date').value = date;
    report($('appointment-result'), null, 'Rescheduled. Links already sent keep the old time: reissue them.');
  } catch (error) {
    report($('appointment-result'), error);
  }
});

$('cancel-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const a = state.appointment;
  try {
    const cancelled = await api('POST', `/api/v1/appointments/${a.id}/cancel`, { reason: $('cancel-reason').value.trim() });
    state.appointment = cancelled;
    renderAppointment(cancelled);
    await renderLinks(cancelled);
    $('cancel-reason').value = '';
    report($('appointment-result'), null, 'The appointment is cancelled.');
  } catch (error) {
    report($('appointment-result'), error);
  }
});

// --- Live sessions -----------------------------------------------------------------------------

const MEMBER_STATE = { waiting: 'in the waiting room', admitted: 'connected', away: 'connection lost, may reconnect' };
const GRADE_TEXT = { good: 'Good', fair: 'Fair', poor: 'Poor', unknown: 'Unknown' };

/** A member's connection quality as words: the grade, then the round trip and the losses. */
function qualityItem(member) {
  const q = member.quality;
  const figures = [];
  if (q.rtt_ms !== null && q.rtt_ms !== undefined) figures.push(`round trip ${q.rtt_ms} ms`);
  if (q.loss_in_percent !== null && q.loss_in_percent !== undefined) figures.push(`${q.loss_in_percent}% lost from them`);
  if (q.loss_out_percent !== null && q.loss_out_percent !== undefined) figures.push(`${q.loss_out_percent}% lost to them`);
  const detail = q.grade === 'unknown' ? 'no recent figures' : figures.join(', ');
  return element('li', {},
    `${member.role}: `,
    element('strong', { className: 'link-grade', dataset: { grade: q.grade } }, GRADE_TEXT[q.grade] || q.grade),
    detail ? ` (${detail})` : '');
}

async function loadLive() {
  let sessions;
  try {
    sessions = await api('GET', '/api/v1/sessions');
  } catch (error) {
    $('live-status').textContent = error.message;
    return;
  }
  $('live-status').textContent = sessions.length
    ? `${sessions.length} live session(s). Updated ${formatTime(Date.now())}.`
    : 'No consultation is live now.';
  $('live-body').replaceChildren(...sessions.map((s) => element('tr', { dataset: { id: s.id } },
    element('th', { scope: 'row' }, s.room),
    element('td', {}, element('ul', {}, ...s.members.map((m) => element('li', {}, `${m.display_name} (${m.role})`)))),
    element('td', {}, formatTime(s.started)),
    element('td', {}, formatDuration(s.remaining_seconds * 1000)),
    element('td', {}, element('ul', {}, ...s.members.map((m) => element('li', {}, `${m.role}: ${MEMBER_STATE[m.state] || m.state}`)))),
    element('td', {}, element('ul', { className: 'link-quality' }, ...s.members.map(qualityItem))),
    element('td', {}, element('details', {},
      element('summary', {}, `Join and leave history (${s.history.length})`),
      element('ol', {}, ...s.history.map((h) => element('li', {}, `${formatTime(h.at)} ${h.what}`))))),
    element('td', {}, button('Terminate', () => askTerminate(s), 'danger', `Terminate the session in ${s.room}`)),
  )));
}

function askTerminate(session) {
  state.terminating = session;
  $('terminate-room').textContent = `${session.room}: everyone is disconnected and sees your reason.`;
  $('terminate-reason').value = '';
  $('terminate-result').textContent = '';
  $('terminate-dialog').showModal();
}

$('terminate-cancel').addEventListener('click', () => $('terminate-dialog').close());
$('terminate-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    await api('POST', `/api/v1/sessions/${state.terminating.id}/terminate`, { reason: $('terminate-reason').value.trim() });
    $('terminate-dialog').close();
    banner(`The session in ${state.terminating.room} was ended.`);
    loadLive();
  } catch (error) {
    report($('terminate-result'), error);
  }
});

// --- Lockdowns ---------------------------------------------------------------------------------

$('lockdown-scope').addEventListener('change', () => {
  const site = $('lockdown-scope').value === 'site';
  $('lockdown-site-field').hidden = !site;
  $('lockdown-room-field').hidden = site;
});

async function loadLockdowns() {
  try {
    const list = await api('GET', '/api/v1/lockdowns');
    $('lockdown-list').replaceChildren(...(list.length ? list.map((l) => {
      const what = l.scope === 'room' ? (roomById(l.target) || { name: 'a room' }).name : `all of ${l.target}`;
      return element('li', {}, `${what}, since ${formatTime(l.since)}: ${l.reason} `,
        button('Lift lockdown', async () => {
          try {
            await api('DELETE', `/api/v1/lockdowns/${l.id}`);
            loadLockdowns();
          } catch (error) { banner(error.message, 'error'); }
        }, '', `Lift lockdown of ${what}`));
    }) : [element('li', {}, 'No lockdown in force.')]));
  } catch (error) {
    banner(error.message, 'error');
  }
}

$('lockdown-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = { reason: $('lockdown-reason').value.trim() };
  if ($('lockdown-scope').value === 'site') body.site = $('lockdown-site').value;
  else body.room_id = $('lockdown-room').value;
  try {
    await api('POST', '/api/v1/lockdowns', body);
    report($('lockdown-result'), null, 'Lockdown placed. Live consultations there have ended.');
    $('lockdown-reason').value = '';
    loadLockdowns();
  } catch (error) {
    report($('lockdown-result'), error);
  }
});

// --- The audit log -----------------------------------------------------------------------------

function auditFilters() {
  const params = new URLSearchParams();
  const time = (id, name) => { if ($(id).value) params.set(name, new Date($(id).value).toISOString()); };
  time('audit-from', 'from');
  time('audit-to', 'to');
  for (const [id, name] of [['audit-kind', 'kind'], ['audit-outcome', 'outcome'], ['audit-appointment', 'appointment'], ['audit-room', 'room']]) {
    if ($(id).value.trim()) params.set(name, $(id).value.trim());
  }
  return params;
}

function describeActor(actor) {
  return actor.id ? `${actor.type} ${actor.role ? `(${actor.role}) ` : ''}${actor.id.slice(0, 8)}…` : actor.type;
}

async function searchAudit(afterSeq) {
  const params = auditFilters();
  params.set('limit', $('audit-limit').value);
  if (afterSeq !== undefined && afterSeq !== null) params.set('after_seq', afterSeq);
  let page;
  try {
    page = await api('GET', `/api/v1/audit/records?${params}`);
  } catch (error) {
    report($('audit-status'), error);
    return;
  }
  state.audit.next = page.next_after_seq;
  $('audit-status').className = '';
  $('audit-status').textContent = page.records.length
    ? `Records ${page.records[0].seq} to ${page.records[page.records.length - 1].seq}${page.next_after_seq !== null && page.next_after_seq !== undefined ? '; more on the next page' : ''}.`
    : 'No record matches.';
  $('audit-body').replaceChildren(...page.records.map((r) => element('tr', { dataset: { seq: r.seq } },
    element('td', {}, String(r.seq)),
    element('td', {}, r.record.recorded),
    element('td', {}, r.record.kind),
    element('td', {}, r.record.outcome.reason ? `${r.record.outcome.result}: ${r.record.outcome.reason}` : r.record.outcome.result),
    element('td', {}, describeActor(r.record.actor)),
    element('td', {}, r.record.object && r.record.object.appointment ? `${r.record.object.appointment.slice(0, 8)}…` : ''),
    element('td', {}, button('Details', () => showRecord(r.seq), '', `Details of record ${r.seq}`)),
  )));
  $('audit-prev').disabled = state.audit.pages.length === 0;
  $('audit-next').disabled = page.next_after_seq === null || page.next_after_seq === undefined;
}

$('audit-form').addEventListener('submit', (event) => {
  event.preventDefault();
  state.audit.pages = [];
  searchAudit();
});
$('audit-next').addEventListener('click', () => {
  state.audit.pages.push(state.audit.current);
  state.audit.current = state.audit.next;
  searchAudit(state.audit.next);
});
$('audit-prev').addEventListener('click', () => {
  state.audit.current = state.audit.pages.pop();
  searchAudit(state.audit.current);
});

async function showRecord(seq) {
  try {
    const record = await api('GET', `/api/v1/audit/records/${seq}`);
    $('record-title').textContent = `Audit record ${seq}`;
    $('record-body').textContent = `${JSON.stringify(record.record, null, 2)}\n\nleaf hash: ${record.leaf_hash}`;
    $('record-dialog').showModal();
  } catch (error) {
    report($('audit-status'), error);
  }
}
$('record-close').addEventListener('click', () => $('record-dialog').close());

$('export').addEventListener('click', async () => {
  const params = auditFilters();
  const format = $('export-format').value;
  params.set('format', format);
  $('export-status').className = '';
  $('export-status').textContent = 'Exporting…';
  try {
    const response = await fetch(`/api/v1/audit/export?${params}`, { cache: 'no-store' });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new ApiFailure(body.code, body.message);
    }
    const blob = await response.blob();
    const name = `gatehouse-audit.${format === 'fhir' ? 'fhir.json' : format}`;
    const link = element('a', { href: URL.createObjectURL(blob), download: name, id: 'export-link' }, `Download ${name} again`);
    $('export-status').replaceChildren(`Exported ${name} (${blob.size} bytes). `, link);
    link.click();
  } catch (error) {
    report($('export-status'), error);
  }
});

$('integrity-check').addEventListener('click', async () => {
  const el = $('integrity-status');
  el.textContent = 'Verifying…';
  try {
    const result = await api('GET', '/api/v1/audit/integrity');
    el.dataset.verified = String(result.verified);
    if (result.verified) {
      const checkpoint = result.last_checkpoint_tree_size !== null && result.last_checkpoint_tree_size !== undefined
        ? `last verified checkpoint at tree size ${result.last_checkpoint_tree_size}`
        : 'no signed checkpoint yet';
      el.className = 'success-text';
      el.textContent = `Verified at ${formatTime(result.checked_at)}: ${result.records} records intact; ${checkpoint}; ${result.unsigned} newer record(s) await the next signature. Root ${result.root.slice(0, 16)}…`;
    } else {
      el.className = 'error-text';
      el.textContent = `The log did NOT verify: ${result.failure.class} at record ${result.failure.seq}: ${result.failure.message}`;
    }
  } catch (error) {
    report(el, error);
  }
});

// --- Start -------------------------------------------------------------------------------------

api('GET', '/api/v1/session').then(signedIn).catch(() => signedOut());
