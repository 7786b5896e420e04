// Cameras, microphones and speakers: opening them, listing them, a live microphone level, and
// a test sound. Used by the device checks of the kiosk and of the consultant's page.

/** Opens the camera and microphone (the given devices when their ids are set). */
export async function openMedia({ cameraId, microphoneId } = {}) {
  return navigator.mediaDevices.getUserMedia({
    video: cameraId ? { deviceId: { exact: cameraId } } : true,
    audio: microphoneId ? { deviceId: { exact: microphoneId } } : true,
  });
}

/** The cameras and microphones this browser offers, as {cameras, microphones}. */
export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: devices.filter((d) => d.kind === 'videoinput'),
    microphones: devices.filter((d) => d.kind === 'audioinput'),
  };
}

/** Fills a <select> with `devices`, selecting `selectedId`. */
export function fillSelect(select, devices, selectedId, noun) {
  select.replaceChildren(...devices.map((device, i) => {
    const option = document.createElement('option');
    option.value = device.deviceId;
    option.textContent = device.label || `${noun} ${i + 1}`;
    option.selected = device.deviceId === selectedId;
    return option;
  }));
}

/**
 * Shows the microphone's level of `stream` in `meter` (a <meter> from 0 to 1) and in its text,
 * until the returned function is called. Calls `onHeard` once when sound is first heard.
 */
export function levelMeter(stream, meter, onHeard) {
  const context = new AudioContext();
  // A page that is capturing may start audio without a click; resume in case it was held.
  context.resume().catch(() => {});
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let heard = false;
  const timer = setInterval(() => {
    meter.dataset.audio = context.state;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) sum += v * v;
    // RMS on a rough log scale, so that speech fills most of the meter.
    const rms = Math.sqrt(sum / samples.length);
    const level = Math.min(1, Math.max(0, 1 + Math.log10(rms + 1e-6) / 3));
    meter.value = level;
    meter.textContent = `${Math.round(level * 100)}%`;
    if (!heard && level > 0.2) {
      heard = true;
      if (onHeard) onHeard();
    }
  }, 100);
  return () => { clearInterval(timer); context.close(); };
}

/** Plays a short two-tone chime on the speakers, so a person can confirm they hear it. */
export async function playTestSound() {
  const context = new AudioContext();
  const gain = context.createGain();
  gain.gain.value = 0.2;
  gain.connect(context.destination);
  for (const [frequency, at] of [[660, 0], [880, 0.35], [660, 0.7]]) {
    const tone = context.createOscillator();
    tone.frequency.value = frequency;
    tone.connect(gain);
    tone.start(context.currentTime + at);
    tone.stop(context.currentTime + at + 0.3);
  }
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await context.close();
}
