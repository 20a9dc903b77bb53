// End-to-end tests of the page's history: what was said before it connected, older pages on
// scrolling up, day separators and the "new messages" line, merging after a server restart,
// and the search box. Real server (its history in the store), real headless Chromium.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  chat, connectedAs, convButton, harness, messages, noScriptRan, online, register, say,
  sentLines, shownOnce, shownTexts, signIn, stallable, systemLine,
} from './helpers.mjs';

const h = harness();
const { cleanup, server, tcp } = h;

/** Waits until the page has an answer to everything it asked. */
function settled(page) {
  return page.waitForFunction(() => window.natter.pending === 0);
}

/** Sends `MESSAGE text` from a TCP client and waits until it is kept. */
async function broadcast(client, text) {
  client.send(`MESSAGE ${text}`);
  return client.expect(/^OK MESSAGE /);
}

describe('history in the browser', { timeout: 60_000 }, () => {
  test('opening Everyone, a room and a DM shows what was said before the page connected', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await h.account(srv, 'carol');
    await tcp(srv, 'dave'); // someone to receive carol's broadcast
    const first = await h.account(srv, 'alice');
    await broadcast(carol, 'said before you came');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    carol.send('SAY #den said in the den');
    await carol.expect(/^OK SAY #den/);
    carol.send('DM alice said to you alone');
    await carol.expect('OK DM alice');
    carol.send('HISTORY *');
    const logged = await carol.expect(/^LOGGED \* /);
    first.send('CLOSE');
    await first.expect(/^BYE CLOSED/);

    const alice = await h.page(srv);
    await signIn(alice, 'alice');
    // Everyone: the earlier message, with the server's time, above the page's welcome.
    const before = chat(alice, 'carol', 'said before you came');
    await before.waitFor();
    assert.equal(await before.locator('time').getAttribute('datetime'), logged.split(' ')[3]);
    assert.equal(await before.getAttribute('data-id'), logged.split(' ')[2]);
    const order = await messages(alice).locator('li.msg').evaluateAll((lis) => lis.map((li) => li.textContent));
    assert.ok(order.findIndex((x) => x.includes('said before you came')) < order.findIndex((x) => x.includes('Welcome')), order.join('\n'));
    // A live message after it: each shown once.
    await broadcast(carol, 'said live');
    await chat(alice, 'carol', 'said live').waitFor();
    await shownOnce(alice, ['said before you came', 'said live']);

    // A room: its history once joined.
    await say(alice, '/join #den');
    await alice.getByRole('heading', { name: '#den', exact: true }).waitFor();
    await chat(alice, 'carol', 'said in the den').waitFor();

    // A DM between two accounts: the conversation's history.
    await alice.getByRole('list', { name: 'Online users' })
      .getByRole('button', { name: /^carol.*: send a direct message$/ }).click();
    await alice.getByRole('heading', { name: '@ carol', exact: true }).waitFor();
    await chat(alice, 'carol', 'said to you alone').waitFor();
    await settled(alice);
    await shownOnce(alice, ['said to you alone']);

    // A guest reads Everyone's history; a DM conversation has none for it, quietly.
    const bob = await h.user(srv, 'bob');
    await chat(bob, 'carol', 'said before you came').waitFor();
    await bob.getByRole('list', { name: 'Online users' })
      .getByRole('button', { name: /^carol.*: send a direct message$/ }).click();
    await bob.getByRole('heading', { name: '@ carol', exact: true }).waitFor();
    await settled(bob);
    assert.equal(await messages(bob).locator('li.msg').count(), 0);
    assert.equal(await bob.getByText(/history/i).count(), 0);
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('scrolling to the top loads older messages and keeps the view still', async (t) => {
    t.after(cleanup);
    const srv = await server({ args: ['--history-limit', '20'] });
    const carol = await tcp(srv, 'carol');
    const dave = await tcp(srv, 'dave');
    // Two senders in turn, so that every message has its header and 20 overflow the log.
    for (let i = 1; i <= 45; i++) await broadcast(i % 2 ? carol : dave, `old ${i}`);

    const page = await h.page(srv, { beforeGoto: (p) => { p.sent = sentLines(p); } });
    await register(page, 'alice');
    await chat(page, 'carol', 'old 45').waitFor();
    await chat(page, 'dave', 'old 26').waitFor();
    await settled(page);
    const newest = Array.from({ length: 20 }, (_, i) => `old ${26 + i}`);
    assert.deepEqual(await shownTexts(page), newest);

    // To the top: the 25 before come above, and what was at the top stays where it was.
    const top = await messages(page).evaluate((log) => {
      log.scrollTop = 0;
      const first = [...log.querySelectorAll('li.msg')].find((li) => li.textContent.includes('old 26'));
      return first.getBoundingClientRect().top;
    });
    await chat(page, 'carol', 'old 1').waitFor();
    await settled(page);
    const all = Array.from({ length: 45 }, (_, i) => `old ${i + 1}`);
    assert.deepEqual(await shownTexts(page), all);
    const still = await chat(page, 'dave', 'old 26').evaluate((li) => li.getBoundingClientRect().top);
    assert.ok(Math.abs(still - top) < 2, `old 26 moved from ${top} to ${still}`);
    assert.equal(page.sent.filter((l) => /^HISTORY \* 50 BEFORE \d+$/.test(l)).length, 1, page.sent.join('\n'));

    // Fewer than asked came back: that was the start, so the top asks no more.
    await messages(page).evaluate((log) => { log.scrollTop = 10; log.scrollTop = 0; });
    await say(page, 'back at the bottom');
    await page.locator('li.own:not(.sending)').filter({ hasText: 'back at the bottom' }).waitFor();
    assert.equal(page.sent.filter((l) => l.startsWith('HISTORY')).length, 2, page.sent.join('\n'));
    await shownOnce(page, [...all, 'back at the bottom']);
    noScriptRan(page);
  });

  test('a separator marks each day, the first at the top', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    await tcp(srv, 'dave');
    await broadcast(carol, 'said yesterday');
    carol.send('HISTORY * 1');
    const at = new Date((await carol.expect(/^LOGGED /)).split(' ')[3]);
    // The page lives on the next day (at noon): the server's message is yesterday's for it,
    // and the page's own lines are today's.

    const tomorrow = new Date(at.getFullYear(), at.getMonth(), at.getDate() + 1, 12);
    const page = await h.page(srv, { beforeGoto: (p) => p.clock.setFixedTime(tomorrow) });
    await register(page, 'alice');
    await chat(page, 'carol', 'said yesterday').waitFor();
    await settled(page);

    const lines = await messages(page).locator(':scope > li').evaluateAll((lis) => lis.map((li) => (
      li.classList.contains('day-sep') ? `--- ${li.textContent} ---` : li.querySelector('.text')?.textContent)));
    assert.deepEqual(lines.slice(0, 4), [
      '--- Yesterday ---',
      'said yesterday',
      '--- Today ---',
      'Welcome, alice! Messages here go to everyone online.',
    ]);
    assert.equal(await messages(page).getByRole('separator', { name: 'Today' }).count(), 1);
    const day = await messages(page).locator('li.day-sep time').first().getAttribute('datetime');
    assert.match(day, /^\d{4}-\d\d-\d\d$/);
    noScriptRan(page);
  });

  test('a "new messages" line goes above what came while the conversation was not shown', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    const page = await h.user(srv, 'alice');
    await broadcast(carol, 'seen as it came');
    await chat(page, 'carol', 'seen as it came').waitFor();
    await say(page, '/join #side');
    await page.getByRole('heading', { name: '#side', exact: true }).waitFor();
    await broadcast(carol, 'missed one');
    await broadcast(carol, 'missed two');
    await convButton(page, 'Everyone').getByText('2', { exact: true }).waitFor();

    await convButton(page, 'Everyone').click();
    const marker = messages(page).getByRole('separator', { name: 'New messages' });
    await marker.waitFor();
    const around = await marker.evaluate((m) => [m.previousElementSibling, m.nextElementSibling]
      .map((li) => li.querySelector('.text').textContent));
    assert.deepEqual(around, ['seen as it came', 'missed one']);
    assert.equal(await marker.count(), 1);

    // Read: it stays while the conversation is shown, and is gone once left and come back to.
    await broadcast(carol, 'while looking');
    await chat(page, 'carol', 'while looking').waitFor();
    assert.equal(await marker.count(), 1);
    await convButton(page, '#side').click();
    await convButton(page, 'Everyone').click();
    await chat(page, 'carol', 'while looking').waitFor();
    assert.equal(await marker.count(), 0);

    // Sending in a conversation reads it too.
    await convButton(page, '#side').click();
    await broadcast(carol, 'missed three');
    await convButton(page, 'Everyone').click();
    await marker.waitFor();
    await say(page, 'answering');
    await marker.waitFor({ state: 'detached' });
    noScriptRan(page);
  });

  test('after a server restart the page merges what it missed, every message once', async (t) => {
    t.after(cleanup);
    const store = h.store();
    const srv = await server({ store });
    let stall;
    const alice = await h.page(srv, { beforeGoto: async (p) => { stall = await stallable(p); } });
    await register(alice, 'alice');
    let carol = await tcp(srv, 'carol');
    await say(alice, '/join #den');
    await alice.getByRole('heading', { name: '#den', exact: true }).waitFor();
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    carol.send('SAY #den den before');
    await chat(alice, 'carol', 'den before').waitFor();
    await say(alice, 'my den before');
    await carol.expect('SAY #den alice my den before');
    await convButton(alice, 'Everyone').click();
    await broadcast(carol, 'everyone before');
    await chat(alice, 'carol', 'everyone before').waitFor();
    await say(alice, 'my everyone before');
    await carol.expect('MESSAGE alice my everyone before');
    await alice.locator('li.own[data-id]').filter({ hasText: 'my everyone before' }).waitFor();

    // A crash: no session survives it, so the page must sign in again. While it cannot hear
    // the new server, what is said there reaches it only through the history.
    await srv.stop({ kill: true });
    await alice.getByRole('alert').getByText(/Connection lost/).waitFor();
    stall.hold();
    const again = await server({ port: srv.port, store });
    carol = await tcp(again, 'carol');
    await tcp(again, 'dave');
    await broadcast(carol, 'everyone while away');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    carol.send('SAY #den den while away');
    await carol.expect(/^OK SAY #den/);
    stall.release();

    await connectedAs(alice, 'alice', 20_000);
    await chat(alice, 'carol', 'everyone while away').waitFor();
    await broadcast(carol, 'everyone after');
    await chat(alice, 'carol', 'everyone after').waitFor();
    await settled(alice);
    await shownOnce(alice, ['everyone before', 'my everyone before', 'everyone while away', 'everyone after']);
    const everyone = await shownTexts(alice);
    assert.ok(everyone.indexOf('my everyone before') < everyone.indexOf('everyone while away'), everyone.join('\n'));

    await convButton(alice, '#den').click();
    await systemLine(alice, 'Rejoined #den.').waitFor();
    await chat(alice, 'carol', 'den while away').waitFor();
    await settled(alice);
    await shownOnce(alice, ['den before', 'my den before', 'den while away']);
    assert.equal(await alice.locator('li.failed').count(), 0);
    noScriptRan(alice);
  });

  test('the search box finds messages, and a result opens its conversation', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    const page = await h.user(srv, 'alice');
    await online(page, 'carol').waitFor();
    await say(page, '/join #den');
    await page.getByRole('heading', { name: '#den', exact: true }).waitFor();
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    carol.send('SAY #den the quick brown fox');
    await chat(page, 'carol', 'the quick brown fox').waitFor();
    await convButton(page, 'Everyone').click();
    await broadcast(carol, 'a fox in Everyone too');
    await broadcast(carol, 'nothing to see here');

    await page.getByRole('button', { name: 'Search messages' }).click();
    const dialog = page.getByRole('dialog', { name: 'Search messages' });
    await dialog.getByLabel('Words to find').fill('FOX');
    await dialog.getByLabel('Words to find').press('Enter');
    await dialog.getByRole('status').getByText('2 messages, newest first').waitFor();
    const results = dialog.getByRole('list', { name: 'Search results' }).getByRole('button');
    assert.deepEqual(await results.locator('.result-target').allTextContents(), ['Everyone', '#den']);
    assert.deepEqual(await results.locator('.from').allTextContents(), ['carol', 'carol']);
    assert.deepEqual(await results.locator('.text').allTextContents(), ['a fox in Everyone too', 'the quick brown fox']);
    for (const when of await results.locator('time').evaluateAll((ts) => ts.map((x) => x.dateTime))) {
      assert.match(when, /^\d{4}-\d\d-\d\dT/);
    }

    // Only in the conversation shown (Everyone), then everywhere again.
    await dialog.getByLabel('Only in Everyone').check();
    await dialog.getByRole('status').getByText('1 message, newest first').waitFor();
    await dialog.getByLabel('Only in Everyone').uncheck();
    await dialog.getByRole('status').getByText('2 messages, newest first').waitFor();
    await dialog.getByLabel('Words to find').fill('nowhere');
    await dialog.getByLabel('Words to find').press('Enter');
    await dialog.getByRole('status').getByText('No messages found.').waitFor();

    await dialog.getByLabel('Words to find').fill('fox');
    await dialog.getByLabel('Words to find').press('Enter');
    await results.filter({ hasText: 'the quick brown fox' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await page.getByRole('heading', { name: '#den', exact: true }).waitFor();
    await chat(page, 'carol', 'the quick brown fox').and(page.locator('li.found')).waitFor();
    noScriptRan(page);
  });
});
