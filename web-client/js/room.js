// The room kiosk. Staff enter the room's credential once; from then on the kiosk shows the
// next appointment and a device check, joins by itself when the window opens, shows the call,
// the end, and goes back to waiting. It survives reloads and network drops on its own.
import { Call } from './call.js';
import { sentence, refusalDetails } from './reasons.js';
import * as clock from './clock.js';
import { openMedia, levelMeter, playTestSound } from './devices.js';
import { measure, plot, describe } from './probe.js';
import { QualityMonitor, QUALITY_TEXT } from './quality.js';
import { RemoteMedia } from './remote.js';

const KEY = 'gatehouse.device';
/** How often the kiosk asks for its next appointment: a window opening is noticed this fast. */
const POLL_MS = 5000;
/** How long the end screen stays before the kiosk waits for the next appointment. */
const END_SCREEN_MS = 15000;
/** How long a refused join is not retried for the same appointment. */
const RETRY_REFUSED_MS = 30000;

const $ = (id) => document.getElementById(id);
const SECTIONS = ['setup', 'waiting', 'lobby', 'call', 'ended'];

const kiosk = {
  credential: null,
  room: null,
  next: null,
  stream: new MediaStream(),
  call: null,
  /** starting, setup, waiting, joining, lobby, call or ended */
  phase: 'starting',
  appointmentId: null,
  endsAt: null,
  hardEnd: null,
  admittedAt: null,
  refusedAt: new Map(),
  finished: new Set(),
  pollTimer: null,
  endTimer: null,
  quality: null,
  check: { camera: null, microphone: null, connection: null },
  /** Settles once the camera and microphone are open (or known to be missing). */
  devicesReady: null,
};

function show(phase) {
  kiosk.phase = phase;
  document.body.dataset.state = phase;
  const section = phase === 'joining' ? 'lobby' : phase;
  for (const id of SECTIONS) $(id).hidden = id !== section;
}

function banner(text, kind = 'info') {
  const el = $('banner');
  el.hidden = !text;
  el.textContent = text || '';
  el.dataset.kind = kind;
}

function timeZone() {
  return kiosk.room ? kiosk.room.timezone : undefined;
}

// --- The credential --------------------------------------------------------------------------

function loadCredential() {
  // Staff may also hand the credential over in the URL fragment, which never reaches a server.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('credential')) {
    localStorage.setItem(KEY, fragment.get('credential'));
    history.replaceState(null, '', location.pathname);
  }
  kiosk.credential = localStorage.getItem(KEY);
}

function askForCredential(reason) {
  clearTimeout(kiosk.pollTimer);
  $('setup-reason').textContent = reason
    ? `${reason} Staff: enter the room credential again.`
    : "Staff: enter the room credential you were given when the room was enrolled. It is kept on this kiosk, so you only do this once.";
  show('setup');
  $('credential-input').focus();
}

$('setup-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('credential-input').value.trim();
  if (!value) return;
  localStorage.setItem(KEY, value);
  $('credential-input').value = '';
  kiosk.credential = value;
  show('waiting');
  poll();
  runDeviceCheck();
});

// --- Waiting for the next appointment ----------------------------------------------------------

async function poll() {
  clearTimeout(kiosk.pollTimer);
  kiosk.pollTimer = setTimeout(poll, POLL_MS);
  let response;
  try {
    response = await fetch('/api/v1/kiosk', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ device_credential: kiosk.credential }),
      cache: 'no-store',
    });
  } catch {
    if (kiosk.phase === 'starting') show('waiting');
    if (kiosk.phase === 'waiting') banner('The gateway cannot be reached. Trying again…', 'warn');
    return;
  }
  const body = await response.json().catch(() => ({}));
  // A valid credential is never limited here, so a 429 refuses this credential as well.
  if (response.status === 401 || response.status === 403 || response.status === 429) {
    askForCredential(sentence(body.code, refusalDetails(response, body)));
    return;
  }
  if (!response.ok) {
    if (kiosk.phase === 'waiting') banner(sentence(body.code, body), 'warn');
    return;
  }
  if (kiosk.phase === 'waiting' && $('banner').dataset.kind !== 'notice') banner('');
  clock.syncWith(body.server_time);
  kiosk.room = body.room;
  kiosk.next = body.next;
  $('room-name').textContent = body.room.name;
  document.title = `${body.room.name}: Gatehouse`;
  if (kiosk.phase === 'starting') show('waiting');
  renderWaiting();
  maybeJoin();
}

function renderWaiting() {
  const next = kiosk.next;
  const tz = timeZone();
  if (!next) {
    $('next-time').textContent = 'No appointment booked';
    $('countdown').textContent = '';
    $('next-status').textContent = 'There is no consultation booked for this room yet. This screen updates by itself.';
    return;
  }
  $('next-time').textContent = `${clock.formatTime(next.start, tz)} to ${clock.formatTime(next.end, tz)}, ${clock.formatDay(next.start, tz)}`;
  const now = clock.now();
  const opens = Date.parse(next.opens);
  const start = Date.parse(next.start);
  if (next.status === 'cancelled') {
    $('countdown').textContent = '';
    $('next-status').textContent = sentence('room_locked_down');
  } else if (now < opens) {
    $('countdown').textContent = `Starts in ${clock.formatDuration(start - now)}`;
    $('next-status').textContent = `This screen will join by itself at ${clock.formatTime(opens, tz)}, when the consultation opens.`;
  } else {
    $('countdown').textContent = now < start ? `Starts in ${clock.formatDuration(start - now)}` : 'Starting now';
    $('next-status').textContent = 'The consultation is open. Joining…';
  }
}

function maybeJoin() {
  const next = kiosk.next;
  if (kiosk.phase !== 'waiting' || !next || next.status === 'cancelled') return;
  if (clock.now() < Date.parse(next.opens) || kiosk.finished.has(next.id)) return;
  const refused = kiosk.refusedAt.get(next.id);
  if (refused && Date.now() - refused < RETRY_REFUSED_MS) return;
  join();
}

// --- The call ----------------------------------------------------------------------------------

async function join() {
  show('joining');
  $('lobby-text').textContent = 'Connecting to the consultation…';
  await kiosk.devicesReady;
  kiosk.call.start({ device: kiosk.credential }, kiosk.stream);
}

function setupCall() {
  const call = new Call();
  kiosk.call = call;
  // Reachable from the browser console (and the end-to-end tests) for diagnostics: getStats().
  window.gatehouseCall = call;
  call.addEventListener('joined', (e) => {
    banner('');
    kiosk.appointmentId = e.detail.appointment_id;
    kiosk.endsAt = Date.parse(e.detail.ends_at);
    kiosk.hardEnd = Date.parse(e.detail.hard_end);
    if (e.detail.admitted) enterCall();
    else lobby();
  });
  call.addEventListener('waiting', lobby);
  call.addEventListener('admitted', enterCall);
  call.addEventListener('participants', (e) => {
    const clinician = e.detail.participants.find((p) => p.role === 'clinician' && p.state !== 'away');
    if (kiosk.phase === 'lobby') {
      $('lobby-text').textContent = clinician
        ? `${clinician.display_name} is here and will let you in shortly.`
        : 'The clinician will let you in shortly. Please stay in the room.';
    }
  });
  // The clinician's camera large; a screen they share beside it.
  const remote = new RemoteMedia($('remote'), $('shared'), 'The screen the clinician is sharing');
  kiosk.remote = remote;
  call.addEventListener('track', (e) => remote.add(e.detail));
  call.addEventListener('timing', (e) => {
    kiosk.endsAt = Date.parse(e.detail.ends_at);
    kiosk.hardEnd = Date.parse(e.detail.hard_end);
    // A warning is sent at a known instant of the gateway's clock: follow it.
    if (e.detail.warning === 'five_minutes') {
      clock.syncWith(new Date(kiosk.endsAt - 5 * 60000).toISOString());
      banner('5 minutes left in this consultation.', 'notice');
    }
    if (e.detail.warning === 'end') {
      clock.syncWith(e.detail.ends_at);
      banner(`The booked time is over. The call will close by ${clock.formatTime(kiosk.hardEnd, timeZone())}.`, 'notice');
    }
  });
  call.addEventListener('error', (e) => {
    if (kiosk.phase === 'joining' || kiosk.phase === 'lobby') {
      if (kiosk.next) kiosk.refusedAt.set(kiosk.next.id, Date.now());
      banner(sentence(e.detail.code, e.detail), 'warn');
    }
  });
  call.addEventListener('ended', (e) => ended(e.detail));
  call.addEventListener('closed', (e) => {
    stopQuality();
    remote.clear();
    if (e.detail.ended) return;
    if (e.detail.code === 4401) {
      // Refused at the door: wait for the next poll.
      show('waiting');
      renderWaiting();
      return;
    }
    if (kiosk.phase === 'lobby' || kiosk.phase === 'call' || kiosk.phase === 'joining') {
      banner('The connection was lost. Reconnecting…', 'warn');
      setTimeout(() => { if (kiosk.phase !== 'ended') join(); }, 2000);
    }
  });
}

function lobby() {
  show('lobby');
  $('lobby-text').textContent = 'The clinician will let you in shortly. Please stay in the room.';
}

function enterCall() {
  if (kiosk.phase !== 'call') {
    kiosk.admittedAt = kiosk.admittedAt && kiosk.phase === 'joining' ? kiosk.admittedAt : Date.now();
  }
  show('call');
  banner('');
  stopQuality();
  kiosk.quality = new QualityMonitor(kiosk.call, (level) => {
    $('quality').dataset.level = level;
    $('quality').textContent = QUALITY_TEXT[level];
  });
}

function stopQuality() {
  if (kiosk.quality) kiosk.quality.stop();
  kiosk.quality = null;
}

function ended(detail) {
  stopQuality();
  // The appointment is over for good, unless the gateway only restarted: then it rejoins.
  if (kiosk.appointmentId && detail.reason !== 'gateway_shutdown') kiosk.finished.add(kiosk.appointmentId);
  kiosk.admittedAt = null;
  kiosk.remote.clear();
  banner('');
  const titles = {
    ended_by_clinician: 'The consultation has ended',
    window_closed: 'The consultation has ended',
    terminated: 'The consultation was stopped',
    appointment_cancelled: 'The appointment was cancelled',
    room_locked_down: 'The appointment was cancelled',
    gateway_shutdown: 'The service is restarting',
  };
  $('ended-title').textContent = titles[detail.reason] || 'The consultation has ended';
  $('ended-reason').textContent = sentence(detail.reason, detail);
  show('ended');
  clearTimeout(kiosk.endTimer);
  kiosk.endTimer = setTimeout(backToWaiting, END_SCREEN_MS);
}

function backToWaiting() {
  clearTimeout(kiosk.endTimer);
  show('waiting');
  renderWaiting();
  poll();
  runDeviceCheck();
}

$('ended-back').addEventListener('click', backToWaiting);

$('mute').addEventListener('click', (e) => {
  const muted = e.currentTarget.getAttribute('aria-pressed') !== 'true';
  e.currentTarget.setAttribute('aria-pressed', String(muted));
  e.currentTarget.textContent = muted ? 'Microphone is off: press to unmute' : 'Mute microphone';
  kiosk.call.setMuted('audio', muted);
});

// --- The device check --------------------------------------------------------------------------

let stopMeter = null;

function verdict() {
  const { camera, microphone, connection } = kiosk.check;
  const problems = [];
  if (camera === false) problems.push('the camera is not working');
  if (microphone === false) problems.push('no sound heard from the microphone yet');
  if (connection === false) problems.push('the connection is weak');
  const el = $('check-verdict');
  if (connection === null) {
    el.dataset.result = 'checking';
    el.textContent = 'Checking…';
  } else if (problems.length === 0 && microphone) {
    el.dataset.result = 'pass';
    el.textContent = 'Pass: ready for the consultation.';
  } else {
    el.dataset.result = 'warn';
    el.textContent = `Warning: ${problems.join('; ') || 'say something to test the microphone'}. Tell staff if this does not clear.`;
  }
}

async function openDevices() {
  try {
    kiosk.stream = await openMedia();
    kiosk.check.camera = kiosk.stream.getVideoTracks().some((t) => t.readyState === 'live');
    $('camera-result').textContent = kiosk.check.camera ? 'Camera: working' : 'Camera: not found';
  } catch (error) {
    kiosk.check.camera = false;
    $('camera-result').textContent = `Camera or microphone not available: ${error.message}`;
  }
  for (const id of ['preview', 'lobby-self', 'self']) $(id).srcObject = kiosk.stream;
}

async function runDeviceCheck() {
  await kiosk.devicesReady;
  kiosk.check.connection = null;
  kiosk.check.microphone = null;
  verdict();
  if (stopMeter) stopMeter();
  if (kiosk.stream.getAudioTracks().length) {
    $('mic-result').textContent = 'Microphone: say something.';
    stopMeter = levelMeter(kiosk.stream, $('mic-level'), () => {
      kiosk.check.microphone = true;
      $('mic-result').textContent = 'Microphone: working, sound heard.';
      verdict();
    });
  } else {
    kiosk.check.microphone = false;
    $('mic-result').textContent = 'Microphone: not available.';
  }
  $('connection-result').textContent = 'Connection: measuring…';
  try {
    const result = await measure({ device_credential: kiosk.credential }, (partial) => plot($('connection-plot'), partial));
    plot($('connection-plot'), result);
    kiosk.check.connection = result.pass;
    $('connection-result').textContent = describe(result);
  } catch (error) {
    kiosk.check.connection = false;
    $('connection-result').textContent = `Connection: the gateway could not be reached (${error.message}).`;
  }
  verdict();
}

$('check-again').addEventListener('click', runDeviceCheck);
$('speaker-test').addEventListener('click', async () => {
  $('speaker-result').textContent = 'Speaker: playing a chime now…';
  await playTestSound();
  $('speaker-result').textContent = 'Speaker: a chime was played. If nobody heard it, check the volume.';
});

$('fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => {});
});

// --- Clock and countdown -----------------------------------------------------------------------

setInterval(() => {
  $('clock').textContent = clock.formatTime(clock.now(), timeZone());
  if (kiosk.phase === 'waiting') {
    renderWaiting();
    maybeJoin();
  }
  if (kiosk.phase === 'call') {
    $('call-timer').textContent = clock.formatTimer(Date.now() - (kiosk.admittedAt || Date.now()));
    const left = kiosk.endsAt - clock.now();
    $('remaining').textContent = left > 0 ? clock.formatDuration(left) : `Over time: closes by ${clock.formatTime(kiosk.hardEnd, timeZone())}`;
  }
}, 1000);

async function main() {
  loadCredential();
  setupCall();
  kiosk.devicesReady = openDevices();
  if (!kiosk.credential) {
    askForCredential();
    return;
  }
  await kiosk.devicesReady;
  await poll();
  runDeviceCheck();
}

main();
