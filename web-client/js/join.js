// The consultant's page: enters with the join link, admits the room from the waiting room,
// and controls the call.
import { Call, sentence } from './call.js';

const token = decodeURIComponent(location.pathname.split('/').pop());
const status = document.getElementById('status');
const remote = document.getElementById('remote');
const local = document.getElementById('local');
const waiting = document.getElementById('waiting');
const controls = document.getElementById('controls');

function say(text) { status.textContent = text; }

async function main() {
  // Binds the link to this browser and says whether it may be used now.
  const check = await fetch('/api/v1/join/link', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  const body = await check.json();
  if (!check.ok) {
    say(sentence(body.code, body.message));
    return;
  }
  say(`Welcome, ${body.display_name}. Connecting…`);
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  local.srcObject = stream;
  const call = new Call();
  // Reachable from the browser console (and the end-to-end tests) for diagnostics: getStats().
  window.gatehouseCall = call;
  call.addEventListener('admitted', () => say('In the consultation.'));
  call.addEventListener('track', (e) => { remote.srcObject = e.detail.streams[0]; });
  call.addEventListener('participants', (e) => {
    waiting.replaceChildren();
    for (const p of e.detail.participants) {
      if (p.state !== 'waiting') continue;
      const button = document.createElement('button');
      button.textContent = `Admit ${p.display_name}`;
      button.addEventListener('click', () => call.admit(p.id));
      waiting.append(button);
    }
  });
  call.addEventListener('timing', (e) => {
    if (e.detail.warning) say(e.detail.warning === 'end' ? 'The booked time is over.' : 'Five minutes left.');
    else say(`The appointment was moved: it now ends at ${new Date(e.detail.ends_at).toLocaleTimeString()}.`);
  });
  call.addEventListener('error', (e) => say(sentence(e.detail.code, e.detail.message)));
  call.addEventListener('ended', (e) => say(sentence(e.detail.reason, e.detail.message)));
  call.addEventListener('closed', (e) => {
    if (!e.detail.ended && e.detail.code !== 4401) setTimeout(() => call.start({ link: token }, stream), 3000);
  });
  document.getElementById('mute').addEventListener('click', (e) => {
    const muted = e.target.getAttribute('aria-pressed') !== 'true';
    e.target.setAttribute('aria-pressed', String(muted));
    call.setMuted('audio', muted);
  });
  document.getElementById('camera').addEventListener('click', (e) => {
    const off = e.target.getAttribute('aria-pressed') !== 'true';
    e.target.setAttribute('aria-pressed', String(off));
    call.setMuted('video', off);
  });
  document.getElementById('share').addEventListener('click', async (e) => {
    const sharing = e.target.getAttribute('aria-pressed') === 'true';
    try {
      const screen = sharing ? null : await navigator.mediaDevices.getDisplayMedia({ video: true });
      if (screen) screen.getVideoTracks()[0].addEventListener('ended', () => call.setScreen(null));
      e.target.setAttribute('aria-pressed', String(!sharing));
      await call.setScreen(screen);
    } catch (error) {
      say(`Screen sharing did not start: ${error.message}`);
    }
  });
  document.getElementById('leave').addEventListener('click', () => call.leave());
  document.getElementById('end').addEventListener('click', () => call.end());
  controls.hidden = false;
  call.start({ link: token }, stream);
}

main().catch((e) => say(`Could not start: ${e.message}`));
