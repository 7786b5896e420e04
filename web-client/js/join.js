// The consultant's (or a guest's) page: checks the link at the door, then the camera and
// microphone, then the waiting room where the clinician admits the room, then the call.
import { Call } from './call.js';
import { sentence, refusalDetails } from './reasons.js';
import * as clock from './clock.js';
import { openMedia, listDevices, fillSelect, levelMeter, playTestSound } from './devices.js';
import { measure, describe } from './probe.js';
import { QualityMonitor, QUALITY_TEXT } from './quality.js';
import { RemoteMedia } from './remote.js';
import { copyField } from './clipboard.js';

const token = decodeURIComponent(location.pathname.split('/').pop());
const DEVICE_KEY = 'gatehouse.consultant.devices';
const $ = (id) => document.getElementById(id);
const SECTIONS = ['refused', 'devices', 'waiting-room', 'in-call', 'ended'];

const page = {
  admission: null,
  stream: new MediaStream(),
  call: new Call(),
  phase: 'checking',
  role: null,
  endsAt: null,
  hardEnd: null,
  quality: null,
  stopMeter: null,
  reconnectTimer: null,
  guestsShown: null,
};
// Reachable from the browser console (and the end-to-end tests) for diagnostics: getStats().
window.gatehouseCall = page.call;

function show(phase) {
  page.phase = phase;
  document.body.dataset.state = phase;
  for (const id of SECTIONS) $(id).hidden = id !== phase;
  $('controls').hidden = !(phase === 'waiting-room' || phase === 'in-call');
  $('share').hidden = page.role !== 'clinician' || phase !== 'in-call';
  $('end').hidden = page.role !== 'clinician';
}

function say(text) { $('status').textContent = text; }

function banner(text, kind = 'info') {
  $('banner').hidden = !text;
  $('banner').textContent = text || '';
  $('banner').dataset.kind = kind;
}

function refuse(code, details) {
  let reason = sentence(code, details);
  // An early link is tried again when it opens, and a refusal by the door's limit once its
  // wait is over.
  let wait = null;
  if (code === 'window_not_open' && details.opens) {
    wait = Math.max(1000, Date.parse(details.opens) - clock.now() + 1000);
  } else if (code === 'rate_limited' && details.retry_after_s) {
    wait = details.retry_after_s * 1000;
    reason += ' This page will try again by itself.';
  }
  $('refused-reason').textContent = reason;
  say('');
  show('refused');
  stopMedia();
  if (wait !== null) setTimeout(checkDoor, Math.min(wait, 2 ** 31 - 1));
}

// --- The door ----------------------------------------------------------------------------------

async function checkDoor() {
  say('Checking your link…');
  let response;
  try {
    response = await fetch('/api/v1/join/link', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token }),
    });
  } catch {
    say('The gateway cannot be reached. Check your network; trying again in 5 seconds.');
    setTimeout(checkDoor, 5000);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (body.server_time) clock.syncWith(body.server_time);
  if (!response.ok) {
    refuse(body.code, refusalDetails(response, body));
    return;
  }
  page.admission = body;
  page.role = body.role;
  const a = body.appointment;
  page.endsAt = Date.parse(a.end);
  page.hardEnd = Date.parse(a.hard_end);
  $('title').textContent = `Consultation with ${a.room_name}`;
  $('appointment-facts').textContent = `${clock.formatTime(a.start)} to ${clock.formatTime(a.end)}, ${clock.formatDay(a.start)}`;
  document.title = `Consultation with ${a.room_name}: Gatehouse`;
  say(`Welcome, ${body.display_name}. Check your camera and microphone, then continue.`);
  await deviceCheck();
}

// --- The device check --------------------------------------------------------------------------

function savedDevices() {
  try { return JSON.parse(localStorage.getItem(DEVICE_KEY)) || {}; } catch { return {}; }
}

async function useDevices(choice) {
  stopMedia();
  try {
    page.stream = await openMedia(choice);
  } catch (error) {
    // A saved device that is gone: fall back to the defaults once.
    if (choice.cameraId || choice.microphoneId) return useDevices({});
    $('check-verdict').dataset.result = 'warn';
    $('check-verdict').textContent = `Warning: the camera or microphone is not available (${error.message}). Allow access in the browser's address bar, then reload.`;
    return;
  }
  for (const id of ['preview', 'waiting-self', 'local']) $(id).srcObject = page.stream;
  const heard = () => {
    $('mic-result').textContent = 'Microphone: working, sound heard.';
    verdict();
  };
  $('mic-result').textContent = 'Microphone: say something.';
  page.heard = false;
  page.stopMeter = levelMeter(page.stream, $('mic-level'), () => { page.heard = true; heard(); });
  const { cameras, microphones } = await listDevices();
  const video = page.stream.getVideoTracks()[0];
  const audio = page.stream.getAudioTracks()[0];
  fillSelect($('camera-select'), cameras, video && video.getSettings().deviceId, 'Camera');
  fillSelect($('microphone-select'), microphones, audio && audio.getSettings().deviceId, 'Microphone');
  verdict();
}

function stopMedia() {
  if (page.stopMeter) page.stopMeter();
  page.stopMeter = null;
  for (const track of page.stream.getTracks()) track.stop();
}

function verdict() {
  const camera = page.stream.getVideoTracks().some((t) => t.readyState === 'live');
  const problems = [];
  if (!camera) problems.push('no camera picture');
  if (!page.heard) problems.push('no sound heard from the microphone yet');
  if (page.connection === false) problems.push('the connection is weak');
  const el = $('check-verdict');
  if (problems.length === 0) {
    el.dataset.result = 'pass';
    el.textContent = 'Pass: your camera, microphone and connection are ready.';
  } else {
    el.dataset.result = 'warn';
    el.textContent = `Warning: ${problems.join('; ')}. You can still continue.`;
  }
}

async function deviceCheck() {
  show('devices');
  await useDevices(savedDevices());
  measure({ link: token })
    .then((result) => {
      page.connection = result.pass;
      $('connection-result').textContent = describe(result);
      verdict();
    })
    .catch((error) => { $('connection-result').textContent = `Connection: not measured (${error.message}).`; });
}

async function onDeviceChange() {
  const choice = { cameraId: $('camera-select').value, microphoneId: $('microphone-select').value };
  localStorage.setItem(DEVICE_KEY, JSON.stringify(choice));
  await useDevices(choice);
}
$('camera-select').addEventListener('change', onDeviceChange);
$('microphone-select').addEventListener('change', onDeviceChange);
$('speaker-test').addEventListener('click', async () => {
  $('speaker-result').textContent = 'Speaker: playing a chime now…';
  await playTestSound();
  $('speaker-result').textContent = 'Speaker: a chime was played. If you did not hear it, check your volume or headset.';
});
$('continue').addEventListener('click', () => {
  say('Joining…');
  page.call.start({ link: token }, page.stream);
});

// --- The waiting room and the call -------------------------------------------------------------

const call = page.call;

call.addEventListener('joined', (e) => {
  banner('');
  page.role = e.detail.role;
  page.endsAt = Date.parse(e.detail.ends_at);
  page.hardEnd = Date.parse(e.detail.hard_end);
  if (page.role === 'clinician') showGuests(e.detail.guests || []);
  if (!e.detail.admitted) {
    say('You are in the waiting room. The clinician will let you in.');
    show('waiting-room');
  } else if (page.phase !== 'in-call') {
    say('You are in the waiting room. Let the room in when it arrives.');
    show('waiting-room');
  }
});

// A clinician may invite the guests the booking lists (an interpreter, a colleague): the
// gateway gives this page the guest's link to pass on, by whatever means the hospital uses.
function showGuests(guests) {
  // A reconnect says `joined` again: a link already shown stays on the page.
  const shown = JSON.stringify(guests);
  if (page.guestsShown === shown) return;
  page.guestsShown = shown;
  for (const list of document.querySelectorAll('.invite-list')) {
    list.hidden = guests.length === 0;
    const heading = document.createElement('h3');
    heading.textContent = 'Guests on this booking';
    list.replaceChildren(heading, ...guests.map((guest) => {
      const item = document.createElement('div');
      item.className = 'invite';
      item.dataset.guest = guest.participant_id;
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = `Get the link for ${guest.display_name}`;
      button.addEventListener('click', () => call.invite(guest.participant_id));
      item.append(button);
      return item;
    }));
  }
}

call.addEventListener('invited', (e) => {
  const url = `${location.origin}/join/${encodeURIComponent(e.detail.link)}`;
  for (const item of document.querySelectorAll(`.invite[data-guest="${CSS.escape(e.detail.participant_id)}"]`)) {
    const label = document.createElement('label');
    const field = document.createElement('input');
    field.readOnly = true;
    field.value = url;
    field.id = `invite-${item.closest('section').id}-${e.detail.participant_id}`;
    label.htmlFor = field.id;
    label.textContent = `Link for ${e.detail.display_name}`;
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.textContent = 'Copy link';
    const note = document.createElement('p');
    note.className = 'hint';
    note.setAttribute('role', 'status');
    note.textContent = `Send this link to ${e.detail.display_name}. It opens only in the first browser that uses it, and they wait until you let them in.`;
    const copied = `Copied. Send it to ${e.detail.display_name}; they wait until you let them in.`;
    copy.addEventListener('click', () => copyField(field, note, copied));
    item.replaceChildren(label, field, copy, note);
  }
});

call.addEventListener('admitted', () => {
  if (page.role !== 'clinician') {
    say('You are in the consultation.');
    show('in-call');
    startQuality();
  }
});

function admitButtons(container, waiting) {
  container.replaceChildren(...waiting.map((p) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'primary';
    button.textContent = `Admit ${p.display_name}`;
    button.addEventListener('click', () => {
      button.disabled = true;
      call.admit(p.id);
    });
    return button;
  }));
}

call.addEventListener('participants', (e) => {
  const others = e.detail.participants.filter((p) => p.role !== page.role || p.role === 'guest');
  const room = e.detail.participants.find((p) => p.role === 'room');
  const waiting = e.detail.participants.filter((p) => p.state === 'waiting');
  if (page.role === 'clinician') {
    admitButtons($('admit-list'), waiting);
    admitButtons($('call-admit-list'), waiting);
  }
  const arrival = $('arrival');
  if (!room) {
    arrival.dataset.arrived = 'false';
    arrival.textContent = 'The room has not arrived yet.';
  } else if (room.state === 'waiting') {
    arrival.dataset.arrived = 'true';
    arrival.textContent = `${room.display_name} has arrived and is waiting.`;
    // Seen in the tab's title too, for a consultant working in another window meanwhile.
    document.title = `${room.display_name} is waiting: Gatehouse`;
  } else if (room.state === 'away') {
    arrival.dataset.arrived = 'false';
    arrival.textContent = `${room.display_name} lost its connection and is reconnecting.`;
  } else {
    arrival.dataset.arrived = 'true';
    arrival.textContent = `${room.display_name} is in the consultation.`;
  }
  const inCall = others.some((p) => p.state === 'admitted') && page.role === 'clinician';
  if (inCall && page.admission) document.title = `Consultation with ${page.admission.appointment.room_name}: Gatehouse`;
  if (inCall && page.phase !== 'in-call') {
    say(`In the consultation with ${room ? room.display_name : 'the room'}.`);
    show('in-call');
    startQuality();
  }
  if (page.phase === 'in-call' && room && room.state === 'away') banner(`${room.display_name} lost its connection and is reconnecting…`, 'warn');
  else if (page.phase === 'in-call' && $('banner').dataset.kind === 'warn') banner('');
});

// The room's camera large; a guest or a shared screen beside it.
const remote = new RemoteMedia($('remote'), $('others'), 'Another participant or a shared screen');
call.addEventListener('track', (e) => remote.add(e.detail));

call.addEventListener('timing', (e) => {
  page.endsAt = Date.parse(e.detail.ends_at);
  page.hardEnd = Date.parse(e.detail.hard_end);
  // A warning is sent at a known instant of the gateway's clock: follow it.
  if (e.detail.warning === 'five_minutes') {
    clock.syncWith(new Date(page.endsAt - 5 * 60000).toISOString());
    banner('5 minutes left in this consultation.', 'notice');
  }
  if (e.detail.warning === 'end') {
    clock.syncWith(e.detail.ends_at);
    banner(`The booked time is over. The call closes by ${clock.formatTime(page.hardEnd)}.`, 'notice');
  }
});

call.addEventListener('error', (e) => {
  // Before the gateway has let us in, an error is a refusal at the door.
  if (page.phase === 'devices') refuse(e.detail.code, e.detail);
  else banner(sentence(e.detail.code, e.detail), 'warn');
});

call.addEventListener('ended', (e) => {
  stopQuality();
  remote.clear();
  stopMedia();
  banner('');
  const text = sentence(e.detail.reason, e.detail);
  $('ended-reason').textContent = text;
  say(text);
  show('ended');
});

call.addEventListener('closed', (e) => {
  stopQuality();
  if (e.detail.ended || e.detail.code === 4401 || page.phase === 'refused') return;
  banner('The connection was lost. Reconnecting…', 'warn');
  clearTimeout(page.reconnectTimer);
  page.reconnectTimer = setTimeout(() => call.start({ link: token }, page.stream), 3000);
});

function startQuality() {
  stopQuality();
  page.quality = new QualityMonitor(call, (level) => {
    $('quality').dataset.level = level;
    $('quality').textContent = QUALITY_TEXT[level];
  });
}

function stopQuality() {
  if (page.quality) page.quality.stop();
  page.quality = null;
}

// --- Controls ----------------------------------------------------------------------------------

function toggle(button, onText, offText, apply) {
  const pressed = button.getAttribute('aria-pressed') !== 'true';
  button.setAttribute('aria-pressed', String(pressed));
  button.textContent = pressed ? onText : offText;
  apply(pressed);
}

$('mute').addEventListener('click', (e) => toggle(e.currentTarget, 'Unmute', 'Mute', (muted) => call.setMuted('audio', muted)));
$('camera').addEventListener('click', (e) => toggle(e.currentTarget, 'Turn camera on', 'Turn camera off', (off) => call.setMuted('video', off)));
$('share').addEventListener('click', async (e) => {
  const button = e.currentTarget;
  const sharing = button.getAttribute('aria-pressed') === 'true';
  try {
    const screen = sharing ? null : await navigator.mediaDevices.getDisplayMedia({ video: true });
    if (screen) {
      screen.getVideoTracks()[0].addEventListener('ended', () => {
        button.setAttribute('aria-pressed', 'false');
        button.textContent = 'Share screen';
        call.setScreen(null);
      });
    }
    button.setAttribute('aria-pressed', String(!sharing));
    button.textContent = sharing ? 'Share screen' : 'Stop sharing';
    await call.setScreen(screen);
  } catch (error) {
    banner(`Screen sharing did not start: ${error.message}`, 'warn');
  }
});
$('end').addEventListener('click', () => $('end-dialog').showModal());
$('end-cancel').addEventListener('click', () => $('end-dialog').close());
$('end-confirm').addEventListener('click', () => {
  $('end-dialog').close();
  call.end();
});

setInterval(() => {
  if (page.phase !== 'in-call' && page.phase !== 'waiting-room') return;
  const left = page.endsAt - clock.now();
  $('remaining').textContent = left > 0 ? clock.formatDuration(left) : `over time, closes by ${clock.formatTime(page.hardEnd)}`;
}, 1000);

checkDoor().catch((error) => say(`Could not start: ${error.message}`));
