// Branches (issue 15 item 3): editing a user message and regenerating a
// reply append a new child of the right entry (pi's tree), and the page
// shows the new branch; the old one stays in the file, unshown.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Relay, launchBrowser, newPage, openChat, sendMessage, transcriptTexts, missingPrerequisite } from './harness.mjs';

describe('branches', () => {
  let relay;
  let browser;
  let page;

  before(async () => {
    const missing = missingPrerequisite();
    if (missing) throw new Error(missing);
    relay = await Relay.start();
    await relay.send('first', 'tree');
    await relay.send('second', 'tree');
    browser = await launchBrowser();
    page = await newPage(browser);
    await openChat(page, relay, { session: 'tree' });
    await page.waitForSelector('#messages .msg >> text=echo: second');
  });

  after(async () => {
    await browser?.close();
    await relay?.cleanup();
  });

  const history = async () => (await relay.api('GET', 'history?session=tree&limit=100')).json.messages;

  it('Edit sends the new text as a sibling of the edited message', async () => {
    const [, firstReply, second] = await history();
    page.once('dialog', (d) => d.accept('second, edited'));
    await page.click(`#messages .msg[data-id="${second.id}"] .edit-btn`);
    // The page loads the conversation again once the turn ends: the old
    // branch goes away.
    await page.waitForFunction((old) => {
      const msgs = [...document.querySelectorAll('#messages .msg')];
      return !msgs.some((m) => m.dataset.id === old) && /echo: second, edited/.test(msgs.at(-1)?.textContent || '');
    }, second.id);
    assert.deepEqual(await transcriptTexts(page), ['first', 'echo: first', 'second, edited', 'echo: second, edited']);
    const now = await history();
    assert.equal(now.length, 4);
    assert.equal(now[2].parentId, firstReply.id, 'a child of the edited message\'s parent');
    assert.notEqual(now[2].id, second.id, 'a new message, the old one kept in the file');
    assert.equal(now[1].id, firstReply.id);
  });

  it('Regenerate answers the same message again, as a new child', async () => {
    const before = await history();
    const reply = before[3];
    await page.click(`#messages .msg[data-id="${reply.id}"] .regenerate-btn`);
    await page.waitForFunction((old) => {
      const msgs = [...document.querySelectorAll('#messages .msg')];
      return msgs.length === 4 && !msgs.some((m) => m.dataset.id === old);
    }, reply.id);
    const after = await history();
    assert.equal(after.length, 4);
    assert.equal(after[2].id, before[2].id, 'the same user message');
    assert.notEqual(after[3].id, reply.id);
    assert.equal(after[3].parentId, before[2].id);
    // A reload shows the same branch: it is the file's leaf.
    await page.reload();
    await page.waitForSelector(`#messages .msg[data-id="${after[3].id}"]`);
    assert.deepEqual(await transcriptTexts(page), ['first', 'echo: first', 'second, edited', 'echo: second, edited']);
  });

  it('‹ 1/2 › switches to the other branch without writing, and a message sent there continues it', async () => {
    const tree = async () => (await relay.api('GET', 'tree?session=tree')).json;
    const before = await tree();
    assert.equal(before.complete, true);
    const latest = await history();
    const edited = latest[2];
    // The edited message and the original are siblings.
    await page.waitForSelector(`#messages .msg[data-id="${edited.id}"] .branch-pos >> text=2/2`);
    await page.click(`#messages .msg[data-id="${edited.id}"] .branch-prev`);
    await page.waitForFunction(() => /echo: second$/.test(document.querySelector('#messages .msg:last-child .msg-body')?.innerText.trim() || ''));
    assert.deepEqual(await transcriptTexts(page), ['first', 'echo: first', 'second', 'echo: second']);
    await page.waitForSelector('#messages .msg .branch-pos >> text=1/2');
    // Looking at a branch appends nothing (pi's /tree moves only its leaf).
    assert.deepEqual((await tree()).entries.length, before.entries.length);
    assert.deepEqual((await history()).map((m) => m.id), latest.map((m) => m.id));
    // The next message goes on from the branch shown.
    await sendMessage(page, 'third');
    await page.waitForFunction(() => /echo: third/.test(document.querySelector('#messages')?.innerText || ''));
    await page.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 6);
    const now = (await history()).map((m) => m.content);
    assert.deepEqual(now, ['first', 'echo: first', 'second', 'echo: second', 'third', 'echo: third']);
    assert.deepEqual(await transcriptTexts(page), ['first', 'echo: first', 'second', 'echo: second', 'third', 'echo: third']);
  });
});
