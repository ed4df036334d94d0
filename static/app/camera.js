// The webcam: opening and closing it, frames, and "hold to record" bursts.
import { ask } from './messages.js';
import { addSample } from './samples.js';
import { status } from './state.js';

const BURST_INTERVAL_MS = 150;

export async function openCamera(video) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  return stream;
}

export function closeCamera(video, stream) {
  stream?.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  video.hidden = true;
}

export function grabFrame(video) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0);
  const { data, width, height } = context.getImageData(0, 0, canvas.width, canvas.height);
  return { rgba: data.buffer, width, height };
}

/// "Hold to record": frames are captured while the button is held (pointer, Space or Enter).
export function wireBurst(button, video, classId) {
  let timer = null;
  const capture = async () => {
    if (!video.videoWidth) return;
    const frame = grabFrame(video);
    try {
      const answer = await ask({ type: 'embed-rgba', ...frame }, [frame.rgba]);
      addSample(classId, 'webcam', answer);
    } catch (e) {
      status(`Webcam frame: ${e.message}`, true);
    }
  };
  const startBurst = (event) => {
    event.preventDefault();
    if (timer) return;
    capture();
    timer = setInterval(capture, BURST_INTERVAL_MS);
    button.classList.add('recording');
  };
  const stopBurst = () => {
    clearInterval(timer);
    timer = null;
    button.classList.remove('recording');
  };
  button.addEventListener('pointerdown', startBurst);
  ['pointerup', 'pointerleave', 'pointercancel', 'blur'].forEach((e) => button.addEventListener(e, stopBurst));
  button.addEventListener('keydown', (e) => { if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) startBurst(e); });
  button.addEventListener('keyup', (e) => { if (e.key === ' ' || e.key === 'Enter') stopBurst(); });
}
