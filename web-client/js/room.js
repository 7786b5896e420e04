// The room kiosk: keeps its device credential, joins its current consultation by itself,
// and reconnects after a drop.
import { Call, sentence } from './call.js';

const status = document.getElementById('status');
const remote = document.getElementById('remote');
const local = document.getElementById('local');
const KEY = 'gatehouse.device';

// The credential arrives once in the URL fragment (never sent to the server in a URL).
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get('credential')) {
  localStorage.setItem(KEY, fragment.get('credential'));
  history.replaceState(null, '', location.pathname);
}
const credential = localStorage.getItem(KEY);

function say(text) { status.textContent = text; }

async function main() {
  if (!credential) {
    say('This kiosk is not set up. Ask staff to open the enrolment link on it.');
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  local.srcObject = stream;
  const call = new Call();
  // Reachable from the browser console (and the end-to-end tests) for diagnostics: getStats().
  window.gatehouseCall = call;
  call.addEventListener('joined', () => say('Connected. Waiting for the clinician…'));
  call.addEventListener('waiting', () => say('Waiting for the clinician to let you in…'));
  call.addEventListener('admitted', () => say('You are in the consultation.'));
  call.addEventListener('track', (e) => { remote.srcObject = e.detail.streams[0]; });
  call.addEventListener('timing', (e) => {
    if (e.detail.warning === 'five_minutes') say('Five minutes left.');
    if (e.detail.warning === 'end') say('The consultation time is over.');
    if (!e.detail.warning) say(`The consultation now ends at ${new Date(e.detail.ends_at).toLocaleTimeString()}.`);
  });
  call.addEventListener('error', (e) => say(sentence(e.detail.code, e.detail.message)));
  call.addEventListener('ended', (e) => say(sentence(e.detail.reason, e.detail.message)));
  call.addEventListener('closed', (e) => {
    remote.srcObject = null;
    // Reconnect by itself, unless the session ended or the join was refused.
    const retryIn = e.detail.ended || e.detail.code === 4401 ? 30000 : 3000;
    setTimeout(() => call.start({ device: credential }, stream), retryIn);
  });
  call.start({ device: credential }, stream);
}

main().catch((e) => say(`The camera or microphone is not available: ${e.message}`));
