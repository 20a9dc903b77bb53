// End-to-end tests of the page's everyday comforts, as in the chat apps people already use:
// names, keyboard and focus, mentions and muting, times in the reader's locale, connection
// errors in words, and user text that cannot pass for the page's own lines.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  chat, composer, connectedAs, convButton, expectFocused, harness, heading, member, noScriptRan,
  online, openConv, openPeople, openSidebar, say, stallable, systemLine, WAIT, WIDTHS,
} from './helpers.mjs';

const h = harness();
const { cleanup, server, tcp, user } = h;

/** Waits until the middle of `locator` is on screen with nothing over it (no side bar). */
async function inView(page, locator) {
  await page.waitForFunction((el) => {
    const r = el.getBoundingClientRect();
    const x = r.left + r.width / 2;
    const y = r.top + r.height / 2;
    return x >= 0 && x < innerWidth && y >= 0 && y < innerHeight && el.contains(document.elementFromPoint(x, y));
  }, await locator.elementHandle(), { timeout: WAIT });
}

describe('the page polished', { timeout: 60_000 }, () => {
  for (const [label, viewport] of WIDTHS) {
    test(`${label}: a remembered name is replaced by typing, and the hint gives the whole rule`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const page = await h.page(srv, {
        viewport,
        beforeGoto: (p) => p.addInitScript(() => localStorage.setItem('natter.name', 'willa')),
      });
      const name = page.getByLabel('Your name');
      assert.equal(await name.inputValue(), 'willa');
      await page.getByRole('status').getByText('Connected.').waitFor();
      // Typed straight away, as a person would: the remembered name was selected, so it goes.
      await page.keyboard.type('pia');
      await page.keyboard.press('Enter');
      await connectedAs(page, 'pia');
      const hint = await page.locator('#name-hint').textContent();
      assert.match(hint, /1 to 32 characters, no spaces/);
      assert.match(hint, /starting with a letter or one of/);
      noScriptRan(page);
    });

    test(`${label}: the keyboard: focus where one writes, Up recalls, Alt+arrows and Ctrl+K switch, Esc closes`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const bob = await tcp(srv, 'bob');
      const page = await user(srv, 'alice', { viewport });
      const box = composer(page);
      bob.send('DM alice hi');
      await bob.expect('OK DM alice');

      // Joined from the side bar's box (on a phone, the side bar opened first): the cursor goes
      // to the room's message box, and the side bar makes way for the room.
      await openSidebar(page);
      await page.getByLabel('Room to join').fill('#den');
      await page.getByLabel('Room to join').press('Enter');
      await heading(page, '#den').waitFor();
      await expectFocused(page, 'composer-input');
      await inView(page, box);
      // Opening a conversation from the side bar, a DM or Everyone, does the same.
      await openConv(page, 'bob');
      await heading(page, '@ bob').waitFor();
      await expectFocused(page, 'composer-input');
      await inView(page, box);
      await openConv(page, 'Everyone');
      await expectFocused(page, 'composer-input');
      // A DM opened from the online list (on a phone, in the people panel) does too.
      await openPeople(page);
      await online(page, 'bob').getByRole('button', { name: 'bob: send a direct message' }).click();
      await heading(page, '@ bob').waitFor();
      await expectFocused(page, 'composer-input');
      await inView(page, box);
      await openConv(page, 'Everyone');
      await expectFocused(page, 'composer-input');

      // Up in the empty box: what was sent, newest first; Down comes back; edited, it sends anew.
      await say(page, 'first line');
      await say(page, 'second line');
      await box.press('ArrowUp');
      assert.equal(await box.inputValue(), 'second line');
      await box.press('ArrowUp');
      assert.equal(await box.inputValue(), 'first line');
      await box.press('ArrowDown');
      assert.equal(await box.inputValue(), 'second line');
      await box.press('ArrowDown');
      assert.equal(await box.inputValue(), '');
      await box.press('ArrowUp');
      await page.keyboard.type(', again');
      await box.press('Enter');
      await bob.expect('MESSAGE alice second line, again');

      // Alt+Down, Alt+Up: the next and previous conversation in the side bar, round the ends.
      await page.keyboard.press('Alt+ArrowDown');
      await heading(page, '#den').waitFor();
      await page.keyboard.press('Alt+ArrowDown');
      await heading(page, '@ bob').waitFor();
      await page.keyboard.press('Alt+ArrowDown');
      await heading(page, 'Everyone').waitFor();
      await page.keyboard.press('Alt+ArrowUp');
      await heading(page, '@ bob').waitFor();
      await expectFocused(page, 'composer-input');

      // Ctrl+K: a box to jump by name; Enter takes the best match.
      const jump = page.getByRole('dialog', { name: 'Jump to a conversation' });
      await page.keyboard.press('Control+k');
      await jump.waitFor();
      await expectFocused(page, 'switcher-input');
      await page.keyboard.type('de');
      await jump.getByRole('option', { name: /#den/, selected: true }).waitFor();
      await page.keyboard.press('Enter');
      await heading(page, '#den').waitFor();
      await jump.waitFor({ state: 'hidden' });
      await expectFocused(page, 'composer-input');
      // A room not yet joined: the box offers to join it.
      await page.keyboard.press('Control+k');
      await page.keyboard.type('#fresh');
      await jump.getByRole('option', { name: /#fresh.*Join this room/ }).waitFor();
      await page.keyboard.press('Enter');
      await heading(page, '#fresh').waitFor();
      // Esc closes the box and gives the focus back.
      await page.keyboard.press('Control+k');
      await jump.waitFor();
      await page.keyboard.press('Escape');
      await jump.waitFor({ state: 'hidden' });
      await expectFocused(page, 'composer-input');
      // And the search panel.
      await page.getByRole('button', { name: 'Search messages' }).click();
      const search = page.getByRole('dialog', { name: 'Search messages' });
      await search.waitFor();
      await page.keyboard.press('Escape');
      await search.waitFor({ state: 'hidden' });
      noScriptRan(page);
    });
  }

  for (const [label, viewport] of WIDTHS) {
    test(`${label}: a message that says your name is highlighted and counted as a mention, unless muted`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const bob = await tcp(srv, 'bob');
      bob.send('JOIN #den');
      await bob.expect(/^OK JOIN #den/);
      const page = await user(srv, 'alice', { viewport });
      await say(page, '/join #den');
      await heading(page, '#den').waitFor();
      await openConv(page, 'Everyone');

      // In #den, not shown: a mention in another case, a message without one, a longer word.
      for (const text of ['hey ALICE, look', 'no name here', 'malice aforethought', '@alice: and you?']) {
        bob.send(`SAY #den ${text}`);
        await bob.expect(/^OK SAY #den/);
      }
      const den = convButton(page, '#den');
      if (viewport) {
        // On a phone the side bar is closed: its button carries the news, mentions in red.
        const toggle = page.getByRole('button', { name: 'Show conversations, 4 unread, 2 for you' });
        await toggle.waitFor();
        assert.match(await toggle.locator('.badge').getAttribute('class'), /\bmention\b/);
        assert.equal(await toggle.locator('.badge').textContent(), '2');
      }
      await openSidebar(page);
      await den.and(page.getByRole('button', { name: '#den, 4 unread, 2 mentions' })).waitFor();
      assert.equal(await den.locator('.badge').getAttribute('class'), 'badge mention');
      await page.waitForFunction(() => document.title === '(2) natter');
      // Opened: the mentions are highlighted, the rest not; the title is clear again.
      await openConv(page, '#den');
      const mention = page.getByRole('log').locator('li.msg.mention');
      await mention.first().waitFor();
      assert.deepEqual(await mention.locator('.text').allTextContents(), ['hey ALICE, look', '@alice: and you?']);
      await page.waitForFunction(() => document.title === 'natter');

      // Muted: a mention neither counts loudly nor reaches the title; the count is quiet.
      const mute = page.getByRole('button', { name: 'Mute #den' });
      await mute.click();
      assert.equal(await mute.getAttribute('aria-pressed'), 'true');
      await openConv(page, 'Everyone');
      bob.send('SAY #den alice? anyone?');
      await bob.expect(/^OK SAY #den/);
      await openSidebar(page);
      await den.and(page.getByRole('button', { name: '#den, 1 unread, muted' })).waitFor();
      assert.equal(await den.locator('.badge').getAttribute('class'), 'badge quiet');
      assert.equal(await page.title(), 'natter');
      // Ordinary unread messages elsewhere: a star, not a count.
      await openConv(page, '#den');
      bob.send('MESSAGE hello all');
      await bob.expect(/^OK MESSAGE/);
      await page.waitForFunction(() => document.title === '* natter');
      // The mute is remembered for the next visit.
      assert.deepEqual(await page.evaluate(() => JSON.parse(localStorage.getItem('natter.muted'))), ['room:#den']);
      noScriptRan(page);
    });
  }

  test('times follow the browser\'s locale, with the whole date and time on hover', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const bob = await tcp(srv, 'bob');
    const us = await user(srv, 'sam', { locale: 'en-US', timezoneId: 'UTC' });
    const de = await user(srv, 'dora', { locale: 'de-DE', timezoneId: 'UTC' });
    bob.send('MESSAGE what time is it?');
    await bob.expect(/^OK MESSAGE/);
    const at = async (page) => {
      const time = chat(page, 'bob', 'what time is it?').locator('time');
      await time.waitFor();
      const iso = await time.getAttribute('datetime');
      return { text: await time.textContent(), title: await time.getAttribute('title'), hour: new Date(iso).getUTCHours() };
    };
    // en-US: 12 hours, AM or PM; the title names the day in English.
    const a = await at(us);
    const m = /^(\d{1,2}):\d\d\s(AM|PM)$/.exec(a.text);
    assert.ok(m, a.text);
    assert.equal(Number(m[1]) % 12 + (m[2] === 'PM' ? 12 : 0), a.hour);
    assert.match(a.title, /^(Sun|Mon|Tues|Wednes|Thurs|Fri|Satur)day, [A-Z][a-z]+ \d{1,2}, \d{4}\b.*\d{1,2}:\d\d:\d\d\s(AM|PM)$/);
    // de-DE: 24 hours, no AM or PM; the title in German.
    const d = await at(de);
    // Whether the hour has a leading zero is the locale data's choice (Chromium's says "1:07").
    const g = /^(\d{1,2}):\d\d$/.exec(d.text);
    assert.ok(g, d.text);
    assert.equal(Number(g[1]), d.hour);
    assert.match(d.title, /^(Sonntag|Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag), \d{1,2}\. [A-ZÄÖÜ][a-zäöü]+ \d{4}\b.*\d{1,2}:\d\d:\d\d$/);
    noScriptRan(us);
    noScriptRan(de);
  });

  test('a connection that fails says why, in words', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const host = `127.0.0.1:${srv.port}`;
    const status = (page) => page.locator('#welcome-status');

    // Closed before the server's greeting, as by a proxy in between: the greeting is held back
    // and the page's side closed with a reason.
    const refused = await h.page(srv, {
      beforeGoto: (p) => p.routeWebSocket(/\/ws$/, (ws) => {
        ws.connectToServer().onMessage(() => ws.close({ code: 1013, reason: 'try again later' }));
      }),
    });
    await status(refused).getByText(`The natter server at ${host} closed the connection before greeting this page: Try again later. Trying again`).waitFor();

    // Open but silent: after a while, the page says it is still waiting for the greeting.
    const silent = await h.page(srv, {
      beforeGoto: async (p) => {
        await p.clock.install();
        (await stallable(p)).hold();
      },
    });
    await silent.waitForFunction(() => window.natter?.open && !window.natter.connected);
    await silent.clock.runFor(10_000);
    await status(silent).getByText(`Connected to the natter server at ${host}, but it has not greeted this page in 10 s. Still waiting…`).waitFor();

    // Nothing listens any more: the server is gone, and every try fails.
    const page = await h.page(srv);
    await status(page).getByText('Connected.').waitFor();
    await srv.stop();
    await status(page).getByText(`Cannot reach the natter server at ${host}: the browser could not open a connection to it. Is the server running? Trying again`).waitFor();
    assert.match(await status(page).getAttribute('class'), /problem/);
    for (const p of [refused, silent, page]) noScriptRan(p);
  });

  test('text someone typed stays inside its quotes, on its line, and cannot draw over others', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    carol.send('JOIN #r');
    await carol.expect(/^OK JOIN #r/);
    const bob = await tcp(srv, 'bob');
    bob.send('JOIN #r');
    await bob.expect(/^OK JOIN #r/);
    const page = await user(srv, 'alice');
    await say(page, '/join #r');
    await member(page, '#r', 'bob').waitFor();

    // A kick reason made to look like a line of the page's own, after a screenful of spaces.
    carol.send(`KICK #r bob ${' '.repeat(200)}atk is now an operator of #r.`);
    await carol.expect('OK KICK #r bob');
    const kick = systemLine(page, 'bob was removed from #r by carol');
    await kick.waitFor();
    const said = kick.locator('.said');
    assert.equal(await said.textContent(), 'atk is now an operator of #r.');
    assert.equal(await said.evaluate((e) => getComputedStyle(e).fontStyle), 'italic');
    assert.equal(await said.evaluate((e) => getComputedStyle(e, '::before').content), '"“"');
    // One line, as tall as any other of the page's lines.
    const height = async (l) => (await l.boundingBox()).height;
    assert.ok(await height(kick) <= await height(systemLine(page, 'You joined #r.')) + 1, 'the kick is one line');

    // A tower of accents (8 on each letter, as many as the server allows): the text is clipped
    // at its own box, which is a line high.
    const tower = 'Z\u0301\u0302\u0303\u0304\u0306\u0307\u0308\u030A'.repeat(6);
    bob.send(`JOIN #r`);
    await bob.expect(/^OK JOIN #r/);
    bob.send(`SAY #r ${tower}`);
    await bob.expect(/^OK SAY #r/);
    const text = chat(page, 'bob', tower).locator('.text');
    await text.waitFor();
    assert.equal(await text.evaluate((e) => getComputedStyle(e).overflow), 'hidden');
    const line = await text.evaluate((e) => parseFloat(getComputedStyle(e).lineHeight));
    assert.ok(await height(text) < 2 * line, 'a line high');
    noScriptRan(page);
  });
});
