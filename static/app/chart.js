// The training chart: loss and accuracy per epoch (or per L2 strength of the linear head's path),
// training and validation.

/** "epoch 3", or "L2 1e-2" for a step of the linear head's regularisation path. */
export function stepName(stats) {
  if (!stats) return undefined;
  return stats.regularization == null ? `epoch ${stats.epoch}` : `L2 ${stats.regularization.toExponential(0)}`;
}
import { $, state } from './state.js';

export function drawChart() {
  const canvas = $('#chart');
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const panels = [
    { title: 'loss', keys: ['train_loss', 'val_loss'], x: 0 },
    { title: 'accuracy', keys: ['train_accuracy', 'val_accuracy'], x: width / 2 },
  ];
  const colours = ['#0a66c2', '#d9480f'];
  context.font = '12px system-ui, sans-serif';
  for (const panel of panels) {
    const left = panel.x + 34, right = panel.x + width / 2 - 8, top = 20, bottom = height - 24;
    const values = state.history.flatMap((h) => panel.keys.map((k) => h[k])).filter((v) => v != null);
    const max = panel.title === 'accuracy' ? 1 : Math.max(...values, 0.1);
    context.strokeStyle = '#999';
    context.beginPath();
    context.moveTo(left, top);
    context.lineTo(left, bottom);
    context.lineTo(right, bottom);
    context.stroke();
    context.fillStyle = '#333';
    context.fillText(panel.title, left, 12);
    context.fillText(max.toFixed(panel.title === 'accuracy' ? 0 : 2), panel.x + 2, top + 4);
    context.fillText('0', panel.x + 20, bottom);
    context.fillText(stepName(state.history[state.history.length - 1]) ?? 'epoch 0', right - 64, height - 6);
    const epochs = Math.max(state.history.length, 2);
    panel.keys.forEach((key, i) => {
      context.strokeStyle = colours[i];
      context.setLineDash(i ? [4, 3] : []);
      context.beginPath();
      state.history.forEach((h, e) => {
        if (h[key] == null) return;
        const px = left + ((right - left) * e) / (epochs - 1);
        const py = bottom - ((bottom - top) * h[key]) / max;
        if (e === 0) context.moveTo(px, py); else context.lineTo(px, py);
      });
      context.stroke();
    });
    context.setLineDash([]);
  }
  context.fillStyle = colours[0];
  context.fillText('— training', width - 150, 12);
  context.fillStyle = colours[1];
  context.fillText('- - validation', width - 80, 12);
}
