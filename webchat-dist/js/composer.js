// The message box: auto-growing textarea, Enter to send, and image
// attachments by paste, drag-and-drop or the attach button (previewed before
// sending; 10 MiB per image, at most 4 per message).

import { el, formatBytes } from './util.js';

export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
export const MAX_IMAGES = 4;
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

export class Composer {
  constructor({ form, input, send, attachBtn, fileInput, previews, error, dropZone, dropOverlay, onSubmit }) {
    this.form = form;
    this.input = input;
    this.sendBtn = send;
    this.fileInput = fileInput;
    this.previews = previews;
    this.error = error;
    this.dropOverlay = dropOverlay;
    this.onSubmit = onSubmit;
    this.files = []; // {file, url}

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    input.addEventListener('input', () => this.autosize());
    // a phone-width box has no room for the keyboard hint
    const narrow = window.matchMedia('(max-width: 760px)');
    const placeholder = () => {
      input.placeholder = narrow.matches ? 'Message…' : 'Message… (Enter to send, Shift+Enter for a new line)';
    };
    narrow.addEventListener('change', placeholder);
    placeholder();
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.submit();
      }
    });
    input.addEventListener('paste', (e) => {
      const files = [...(e.clipboardData ? e.clipboardData.files : [])];
      if (files.length) {
        e.preventDefault();
        this.addFiles(files);
      }
    });
    attachBtn.addEventListener('click', () => fileInput.click());
    fileInput.addEventListener('change', () => {
      this.addFiles([...fileInput.files]);
      fileInput.value = '';
    });

    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    dropZone.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth += 1;
      dropOverlay.hidden = false;
    });
    dropZone.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    dropZone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) dropOverlay.hidden = true;
    });
    dropZone.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      dropOverlay.hidden = true;
      this.addFiles([...e.dataTransfer.files]);
    });
  }

  autosize() {
    const ta = this.input;
    ta.style.height = 'auto';
    const max = Math.max(120, Math.floor(window.innerHeight * 0.4));
    ta.style.height = `${Math.min(ta.scrollHeight, max)}px`;
    ta.style.overflowY = ta.scrollHeight > max ? 'auto' : 'hidden';
  }

  showError(text) {
    this.error.textContent = text || '';
    this.error.hidden = !text;
  }

  addFiles(files) {
    const problems = [];
    for (const file of files) {
      if (!IMAGE_TYPES.has(file.type)) {
        problems.push(`“${file.name || 'file'}” is not a PNG, JPEG, GIF or WebP image.`);
        continue;
      }
      if (file.size > MAX_IMAGE_BYTES) {
        problems.push(`“${file.name || 'image'}” is ${formatBytes(file.size)}; images can be at most 10 MiB.`);
        continue;
      }
      if (this.files.length >= MAX_IMAGES) {
        problems.push(`At most ${MAX_IMAGES} images can be attached to one message.`);
        break;
      }
      this.files.push({ file, url: URL.createObjectURL(file) });
    }
    this.showError(problems.join(' '));
    this.renderPreviews();
  }

  removeFile(i) {
    const [f] = this.files.splice(i, 1);
    if (f) URL.revokeObjectURL(f.url);
    this.showError('');
    this.renderPreviews();
  }

  renderPreviews() {
    this.previews.hidden = this.files.length === 0;
    this.previews.replaceChildren(...this.files.map((f, i) => el('div', { class: 'attach-preview' },
      el('img', { src: f.url, alt: f.file.name || 'image to attach' }),
      el('button', { class: 'remove', type: 'button', 'aria-label': `Remove ${f.file.name || 'image'}`, text: '×', onclick: () => this.removeFile(i) }))));
  }

  submit() {
    const text = this.input.value.trim();
    if (!text && this.files.length === 0) return;
    const files = this.files.map((f) => f.file);
    const previews = this.files.map((f) => f.url); // handed over to the pending bubble
    this.files = [];
    this.input.value = '';
    this.autosize();
    this.showError('');
    this.renderPreviews();
    this.onSubmit({ text, files, previews });
  }

  focus() {
    this.input.focus();
  }

  /** Replaces the text (a session's saved draft). */
  setText(text) {
    this.input.value = text;
    this.autosize();
  }
}
