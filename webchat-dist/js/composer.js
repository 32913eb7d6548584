// @ts-check
// The message box: auto-growing textarea, Enter to send, and attachments
// (images, text files, PDFs) by paste, drag-and-drop or the attach button,
// previewed before sending. What may be attached (size, count, types) is the
// relay's word, from /webchat/info (`attachments`); until it has answered,
// the relay's defaults.

import { el, formatBytes } from './util.js';

const DEFAULT_LIMITS = {
  maxBytes: 10 * 1024 * 1024,
  maxCount: 8,
  types: ['image/png', 'image/jpeg', 'image/gif', 'image/webp'],
};

// Browsers give many text files no type or one of their own (.log, .rs,
// .yaml): those go as text/plain, and the relay refuses what is not UTF-8.
const BY_EXTENSION = { md: 'text/markdown', markdown: 'text/markdown', csv: 'text/csv', json: 'application/json', pdf: 'application/pdf', txt: 'text/plain' };

/** The type a file is uploaded as, or null if the relay does not take it. */
export function uploadType(file, types = DEFAULT_LIMITS.types) {
  const accepted = new Set(types);
  if (accepted.has(file.type)) return file.type;
  const ext = (file.name || '').toLowerCase().split('.').pop();
  const byExt = BY_EXTENSION[ext];
  if (byExt && accepted.has(byExt)) return byExt;
  if (accepted.has('text/plain') && (file.type === '' || file.type.startsWith('text/') || /\+(json|xml)$|^application\/(xml|x-yaml|x-sh|javascript)$/.test(file.type))) return 'text/plain';
  return null;
}

export class Composer {
  /**
   * @param {object} o
   * @param {HTMLFormElement} o.form
   * @param {HTMLTextAreaElement} o.input
   * @param {HTMLElement} o.send
   * @param {HTMLElement} o.attachBtn
   * @param {HTMLInputElement} o.fileInput
   * @param {HTMLElement} o.previews
   * @param {HTMLElement} o.error
   * @param {HTMLElement} o.dropZone
   * @param {HTMLElement} o.dropOverlay
   * @param {(message: {text: string, files: File[], previews: string[]}) => void} o.onSubmit
   */
  constructor({ form, input, send, attachBtn, fileInput, previews, error, dropZone, dropOverlay, onSubmit }) {
    this.form = form;
    this.input = input;
    this.sendBtn = send;
    this.fileInput = fileInput;
    this.previews = previews;
    this.error = error;
    this.dropOverlay = dropOverlay;
    this.onSubmit = onSubmit;
    /** @type {{file: File, url: string | null}[]} */
    this.files = [];
    this.limits = DEFAULT_LIMITS;

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

  /** The relay's limits (`/webchat/info`'s `attachments`). */
  /** @param {AttachmentLimits | undefined} limits */
  setLimits(limits) {
    if (!limits || typeof limits !== 'object') return;
    this.limits = {
      maxBytes: Number(limits.maxBytes) > 0 ? Number(limits.maxBytes) : DEFAULT_LIMITS.maxBytes,
      maxCount: Number(limits.maxCount) > 0 ? Number(limits.maxCount) : DEFAULT_LIMITS.maxCount,
      types: Array.isArray(limits.types) && limits.types.length ? limits.types : DEFAULT_LIMITS.types,
    };
  }

  addFiles(files) {
    const problems = [];
    const { maxBytes, maxCount, types } = this.limits;
    for (const file of files) {
      const type = uploadType(file, types);
      if (!type) {
        const what = types.some((t) => !t.startsWith('image/')) ? 'an image, a text file or a PDF' : 'a PNG, JPEG, GIF or WebP image';
        problems.push(`“${file.name || 'file'}” is not ${what}.`);
        continue;
      }
      if (file.size > maxBytes) {
        problems.push(`“${file.name || 'file'}” is ${formatBytes(file.size)}; attachments can be at most ${formatBytes(maxBytes)}.`);
        continue;
      }
      if (this.files.length >= maxCount) {
        problems.push(`At most ${maxCount} files can be attached to one message.`);
        break;
      }
      this.files.push({ file, url: type.startsWith('image/') ? URL.createObjectURL(file) : null });
    }
    this.showError(problems.join(' '));
    this.renderPreviews();
  }

  removeFile(i) {
    const [f] = this.files.splice(i, 1);
    if (f && f.url) URL.revokeObjectURL(f.url);
    this.showError('');
    this.renderPreviews();
  }

  renderPreviews() {
    this.previews.hidden = this.files.length === 0;
    this.previews.replaceChildren(...this.files.map((f, i) => el('div', { class: f.url ? 'attach-preview' : 'attach-preview file' },
      f.url ? el('img', { src: f.url, alt: f.file.name || 'image to attach' })
        : el('span', { class: 'file-chip', text: `${f.file.name || 'file'} (${formatBytes(f.file.size)})` }),
      el('button', { class: 'remove', type: 'button', 'aria-label': `Remove ${f.file.name || 'file'}`, text: '×', onclick: () => this.removeFile(i) }))));
  }

  submit() {
    const text = this.input.value.trim();
    if (!text && this.files.length === 0) return;
    const files = this.files.map((f) => f.file);
    const previews = this.files.filter((f) => f.url).map((f) => f.url); // handed over to the pending bubble
    this.files = [];
    this.input.value = '';
    this.autosize();
    this.showError('');
    this.renderPreviews();
    this.onSubmit({ text, files, previews });
  }

  focus() {
    // The composer is always in view; not scrolling to it also spares the
    // page a layout before its first paint.
    this.input.focus({ preventScroll: true });
  }

  /** Replaces the text (a session's saved draft). */
  setText(text) {
    this.input.value = text;
    // An empty box that was never sized has its natural one-line height:
    // measuring it would cost the opening page a layout before its messages.
    if (!text && !this.input.style.height) return;
    this.autosize();
  }
}
