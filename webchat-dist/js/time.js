// @ts-check
// Times as the user's locale writes them.
//
// A new tab's renderer pays 35–45 ms for its first Intl.DateTimeFormat (ICU
// loads the locale's data; measured in Chromium, docs/benchmarks.md), a
// seventh of the budget for a painted chat. So the first paint does without
// Intl: an earlier page stored the formatters' shape (the order of their
// parts, the hour cycle, the month names and day periods), and a time is
// written from that shape until `warmTimeFormats` runs after the paint. A
// shape is stored only when it reproduces Intl's own output for every month
// and every kind of hour, so a time written from it is the text Intl would
// have written; a locale the shape cannot express (other digits, other parts)
// simply has no shape, and its first time pays for Intl as before.

import { store } from './util.js';

const SHAPE_KEY = 'loopchat.timeShape';
const SHAPE_VERSION = 1;

/** @type {Record<'time' | 'dateTime' | 'full', Intl.DateTimeFormatOptions>} */
const OPTIONS = {
  time: { hour: '2-digit', minute: '2-digit' },
  dateTime: { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' },
  full: { dateStyle: 'full', timeStyle: 'medium' },
};

/** @type {{ time: Intl.DateTimeFormat, dateTime: Intl.DateTimeFormat, full: Intl.DateTimeFormat } | null} */
let formats = null;

/**
 * What a stored shape holds: the parts of the two short formats in order
 * (a literal's text, or the name of a field), and the texts of the fields
 * that are words.
 * @typedef {{ l: string } | { t: 'hour' | 'minute' | 'day' | 'month' | 'dayPeriod' }} ShapePart
 * @typedef {{ v: number, locale: string, hourCycle: string, time: ShapePart[], dateTime: ShapePart[], months: string[], am: string, pm: string }} Shape
 */

/** @type {Shape | null | undefined} undefined: not read yet */
let shape;
let warmed = false;

/** The languages the browser asks for: a shape is kept per list. */
function localeKey() {
  return (navigator.languages || [navigator.language]).join(',');
}

function intl() {
  if (!formats) {
    formats = {
      time: new Intl.DateTimeFormat(undefined, OPTIONS.time),
      dateTime: new Intl.DateTimeFormat(undefined, OPTIONS.dateTime),
      full: new Intl.DateTimeFormat(undefined, OPTIONS.full),
    };
  }
  return formats;
}

/** @returns {Shape | null} */
function storedShape() {
  if (shape === undefined) {
    /** @type {Shape | null} */
    const s = store.get(SHAPE_KEY, null);
    shape = s && s.v === SHAPE_VERSION && s.locale === localeKey() && Array.isArray(s.months) && s.months.length === 12 ? s : null;
  }
  return shape;
}

const pad2 = (/** @type {number} */ n) => String(n).padStart(2, '0');

/**
 * @param {Shape} s
 * @param {'time' | 'dateTime'} kind
 * @param {Date} date
 */
function fromShape(s, kind, date) {
  const h = date.getHours();
  let out = '';
  for (const p of s[kind]) {
    if ('l' in p) { out += p.l; continue; }
    switch (p.t) {
      case 'hour':
        out += pad2(s.hourCycle === 'h23' ? h : s.hourCycle === 'h24' ? h || 24 : s.hourCycle === 'h11' ? h % 12 : h % 12 || 12);
        break;
      case 'minute': out += pad2(date.getMinutes()); break;
      case 'day': out += String(date.getDate()); break;
      case 'month': out += s.months[date.getMonth()]; break;
      case 'dayPeriod': out += h < 12 ? s.am : s.pm; break;
    }
  }
  return out;
}

/**
 * @param {'time' | 'dateTime'} kind
 * @param {Date} date
 */
function write(kind, date) {
  if (!formats) {
    const s = storedShape();
    if (s) return fromShape(s, kind, date);
  }
  return intl()[kind].format(date);
}

/** Whether a field of formatToParts is one a shape can write. */
const FIELDS = new Set(['hour', 'minute', 'day', 'month', 'dayPeriod']);

/** The shape of the current formatters, or null when it would not match them everywhere. */
function learnShape() {
  const f = intl();
  /** @param {Intl.DateTimeFormat} fmt @returns {ShapePart[] | null} */
  const partsOf = (fmt) => {
    /** @type {ShapePart[]} */
    const parts = [];
    for (const p of fmt.formatToParts(new Date(2024, 0, 5, 13, 7))) {
      if (p.type === 'literal') parts.push({ l: p.value });
      else if (FIELDS.has(p.type)) parts.push({ t: /** @type {any} */ (p.type) });
      else return null;
    }
    return parts;
  };
  const time = partsOf(f.time);
  const dateTime = partsOf(f.dateTime);
  if (!time || !dateTime) return null;
  const field = (/** @type {Date} */ d, /** @type {string} */ type) => f.dateTime.formatToParts(d).find((p) => p.type === type)?.value ?? '';
  /** @type {Shape} */
  const s = {
    v: SHAPE_VERSION,
    locale: localeKey(),
    hourCycle: f.time.resolvedOptions().hourCycle || 'h23',
    time,
    dateTime,
    months: Array.from({ length: 12 }, (_, m) => field(new Date(2024, m, 5, 13, 7), 'month')),
    am: field(new Date(2024, 0, 5, 1, 7), 'dayPeriod'),
    pm: field(new Date(2024, 0, 5, 13, 7), 'dayPeriod'),
  };
  for (let m = 0; m < 12; m++) {
    for (const h of [0, 1, 9, 11, 12, 13, 21, 23]) {
      const d = new Date(2024, m, m % 2 ? 28 : 1, h, 5 + m);
      if (fromShape(s, 'time', d) !== f.time.format(d) || fromShape(s, 'dateTime', d) !== f.dateTime.format(d)) return null;
    }
  }
  return s;
}

/**
 * After the first paint: create the formatters, store their shape for the
 * next page, and give the shown message times their tooltips (and their
 * text, where a stale shape wrote it differently).
 */
export function warmTimeFormats() {
  if (warmed) return;
  warmed = true;
  const used = storedShape();
  intl();
  const learned = learnShape();
  if (JSON.stringify(learned) !== JSON.stringify(used)) {
    if (learned) store.set(SHAPE_KEY, learned);
    else store.remove(SHAPE_KEY);
  }
  shape = learned;
  for (const t of /** @type {NodeListOf<HTMLTimeElement>} */ (document.querySelectorAll('time.msg-time'))) {
    const date = new Date(t.getAttribute('datetime') || '');
    if (Number.isNaN(date.getTime())) continue;
    const text = shortTime(date);
    if (t.textContent !== text) t.textContent = text;
    if (!t.title) t.title = fullTime(date);
  }
}

/** Whether full dates can be written without a formatter's set-up: for tooltips, which can wait. */
export function timeFormatsReady() {
  return formats !== null;
}

/** Short clock time for today, date + time otherwise. */
export function shortTime(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return '';
  const now = new Date();
  return write(date.toDateString() === now.toDateString() ? 'time' : 'dateTime', date);
}

/** The full date and time (a tooltip's). */
export function fullTime(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return '';
  return intl().full.format(date);
}

/** "just now", "5 min ago", "3 h ago", "2 d ago", then a date. */
export function relativeTime(date, now = Date.now()) {
  const t = date instanceof Date ? date.getTime() : Number(date);
  if (!Number.isFinite(t)) return '';
  const s = Math.round((now - t) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  if (d < 7) return `${d} d ago`;
  return write('dateTime', new Date(t));
}
