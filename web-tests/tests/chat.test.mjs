// End-to-end tests of natter's browser page: real server, real headless Chromium.
//
// Every test starts its own server (a fresh hub) and its own browser contexts, so the tests
// do not depend on one another. Waits are Playwright's auto-waiting locators with bounded
// timeouts, never fixed sleeps.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  chat, composer, connectedAs, convButton, expectFocused, gone, harness, messages, noScriptRan, online,
  openPage, register, say, systemLine, WAIT,
} from './helpers.mjs';

const h = harness();
const { cleanup, defer, server, tcp, user } = h;

describe('natter in the browser', { timeout: 60_000 }, () => {
  test('two browser users chat in Everyone, a room and a DM, and see each other come and go', async (t) => {
    t.after(cleanup);
    // A closed tab is a lost connection: its session waits the linger time (short here).
    const srv = await server({ linger: 1 });
    const alice = await user(srv, 'alice');
    const bob = await user(srv, 'bob');

    // The online list: LIST on registration, then ONLINE.
    await online(alice, 'bob').waitFor();
    await online(bob, 'alice').waitFor();
    await online(alice, 'alice').getByText('you').waitFor();

    // Everyone: typed and sent with Enter; shown to the sender as their own.
    await say(alice, 'hello everyone');
    await chat(bob, 'alice', 'hello everyone').waitFor();
    const own = chat(alice, 'alice', 'hello everyone');
    await own.and(alice.locator('li.own:not(.sending):not(.failed)')).waitFor();
    assert.match(await own.locator('time').getAttribute('datetime'), /^\d{4}-\d\d-\d\dT/);

    // A room: alice creates it with the join box; bob finds it with Browse rooms.
    await alice.getByLabel('Room to join').fill('#lounge');
    await alice.getByRole('button', { name: 'Join room' }).click();
    await alice.getByRole('heading', { name: '#lounge', exact: true }).waitFor();
    await alice.getByRole('list', { name: 'Members of #lounge' }).getByText('alice').waitFor();

    await bob.getByRole('button', { name: 'Browse rooms…' }).click();
    const dialog = bob.getByRole('dialog', { name: 'Rooms' });
    await dialog.getByText('1 member').waitFor();
    await dialog.getByRole('button', { name: 'Join #lounge' }).click();
    await bob.getByRole('heading', { name: '#lounge', exact: true }).waitFor();
    const bobMembers = bob.getByRole('list', { name: 'Members of #lounge' });
    await bobMembers.locator('li[data-name="alice"]').getByText('op').waitFor();
    await bobMembers.locator('li[data-name="bob"]').waitFor();

    await systemLine(alice, 'bob joined #lounge.').waitFor();
    await alice.getByRole('list', { name: 'Members of #lounge' }).locator('li[data-name="bob"]').waitFor();

    await say(bob, 'hi room');
    await chat(alice, 'bob', 'hi room').waitFor();

    // The topic: set by the operator with /topic, shown in both headers.
    await say(alice, '/topic Calm chat only');
    await alice.locator('#conv-topic').getByText('Calm chat only').waitFor();
    await bob.locator('#conv-topic').getByText('Calm chat only').waitFor();
    await systemLine(bob, 'alice set the topic: Calm chat only').waitFor();

    // A DM: bob picks alice from the online list; alice sees an unread count, then reads it.
    await bob.getByRole('list', { name: 'Online users' })
      .getByRole('button', { name: 'alice: send a direct message' }).click();
    await bob.getByRole('heading', { name: '@ alice', exact: true }).waitFor();
    await say(bob, 'psst, alice');
    await chat(bob, 'bob', 'psst, alice').and(bob.locator('li.own:not(.sending)')).waitFor();
    const dmButton = convButton(alice, 'bob');
    await dmButton.getByText('1', { exact: true }).waitFor();
    assert.equal(await dmButton.getAttribute('aria-label'), 'bob, 1 unread');
    await alice.waitForFunction(() => document.title === '(1) natter');
    await dmButton.click();
    await chat(alice, 'bob', 'psst, alice').waitFor();
    await gone(dmButton.locator('.badge'));
    await say(alice, 'hi bob');
    await chat(bob, 'alice', 'hi bob').waitFor();

    // Leaving a room: bob parts #lounge; alice sees it and the member list shrinks.
    await bob.getByRole('button', { name: '#lounge', exact: true }).click();
    await bob.getByRole('button', { name: 'Leave' }).click();
    await bob.getByRole('heading', { name: 'Everyone', exact: true }).waitFor();
    await gone(bob.locator('#room-list').getByText('#lounge'));
    await convButton(alice, '#lounge').click();
    await systemLine(alice, 'bob left #lounge.').waitFor();
    await gone(alice.getByRole('list', { name: 'Members of #lounge' }).locator('li[data-name="bob"]'));

    // Leaving the chat: bob closes his tab.
    await bob.context().close();
    await gone(online(alice, 'bob'));
    await convButton(alice, 'Everyone').click();
    await systemLine(alice, 'bob went offline.').waitFor();

    noScriptRan(alice);
  });

  test('markup in a message is shown literally and never runs', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    const bob = await user(srv, 'bob');
    await online(alice, 'bob').waitFor();
    const evil = '<img src=x onerror=alert(1)>';

    await say(bob, evil);
    await chat(alice, 'bob', evil).waitFor();
    await chat(bob, 'bob', evil).waitFor();

    // The same in a DM and as a room topic.
    await say(bob, `/dm alice ${evil}`);
    await convButton(alice, 'bob').click();
    await chat(alice, 'bob', evil).waitFor();
    await say(alice, '/join #x');
    await alice.getByRole('heading', { name: '#x', exact: true }).waitFor();
    await say(alice, `/topic <b onmouseover=alert(2)>${evil}</b>`);
    await alice.locator('#conv-topic').getByText(`<b onmouseover=alert(2)>${evil}</b>`).waitFor();

    // A round trip after it, so an image error handler would have had its chance to run.
    await convButton(alice, 'Everyone').click();
    await convButton(bob, 'Everyone').click();
    await say(bob, 'after');
    await chat(alice, 'bob', 'after').waitFor();

    for (const page of [alice, bob]) {
      assert.equal(await page.locator('#messages img, #conv-topic *').count(), 0);
      assert.equal(await page.locator('img, b').count(), 0);
      noScriptRan(page);
    }
  });

  test('a TCP client of the line protocol and a browser user talk to each other', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    const alice = await user(srv, 'alice');
    await carol.expect('ONLINE alice');
    await online(alice, 'carol').waitFor();

    // Everyone, both ways.
    await say(alice, 'hi carol, from the browser');
    await carol.expect('MESSAGE alice hi carol, from the browser');
    carol.send('MESSAGE hello alice, from a terminal');
    await carol.expect('OK MESSAGE 1');
    await chat(alice, 'carol', 'hello alice, from a terminal').waitFor();

    // DMs, both ways: carol's arrives as an unread DM conversation.
    carol.send('DM alice  two  spaces kept ');
    await carol.expect('OK DM alice');
    await convButton(alice, 'carol').getByText('1', { exact: true }).waitFor();
    await convButton(alice, 'carol').click();
    const spaced = chat(alice, 'carol', 'two spaces kept');
    await spaced.waitFor();
    assert.equal(await spaced.locator('.text').textContent(), 'two  spaces kept ');
    await say(alice, 'got it');
    await carol.expect('DM alice got it');
    await say(alice, '/me waves');
    await carol.expect('DM alice /me waves');
    await alice.locator('li.action').getByText('* alice waves').waitFor();

    // A room made by the TCP client.
    carol.send('JOIN #tcp');
    await carol.expect('OK JOIN #tcp 1');
    carol.send('TOPIC #tcp lines and frames');
    await carol.expect('OK TOPIC #tcp');
    await say(alice, '/join #tcp');
    await carol.expect('JOINED #tcp alice');
    await alice.locator('#conv-topic').getByText('lines and frames').waitFor();
    await alice.getByRole('list', { name: 'Members of #tcp' }).locator('li[data-name="carol"]').getByText('op').waitFor();
    carol.send('SAY #tcp from the terminal');
    await carol.expect('OK SAY #tcp 1');
    await chat(alice, 'carol', 'from the terminal').waitFor();
    await say(alice, 'from the page');
    await carol.expect('SAY #tcp alice from the page');

    // The TCP user renames, then leaves.
    carol.send('REGISTER Caroline');
    await carol.expect('OK REGISTER Caroline');
    await alice.getByRole('list', { name: 'Members of #tcp' }).locator('li[data-name="Caroline"]').waitFor();
    await online(alice, 'Caroline').waitFor();
    await gone(online(alice, 'carol'));
    await convButton(alice, 'Caroline').waitFor();
    carol.send('CLOSE');
    await carol.expect(/^BYE CLOSED/);
    await gone(online(alice, 'Caroline'));
    await systemLine(alice, 'Caroline left #tcp (disconnected).').waitFor();
    noScriptRan(alice);
  });

  test('the page reconnects after a server restart, re-taking its name and rooms', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    const bob = await user(srv, 'bob');
    await say(alice, '/join #persist');
    await alice.getByRole('heading', { name: '#persist', exact: true }).waitFor();
    await convButton(alice, 'Everyone').click();
    await say(alice, 'before the restart');
    await chat(bob, 'alice', 'before the restart').waitFor();
    const sockets = [];
    alice.on('websocket', (ws) => sockets.push(ws.url()));

    // Stop the server: the page says it is reconnecting.
    await srv.stop();
    await alice.getByRole('alert').getByText(/Connection lost/).waitFor();
    await alice.getByRole('status', { name: 'Connection' }).getByText('Reconnecting…').waitFor();

    // Start it again on the same port: the page comes back under the same name, by itself.
    const again = await server({ port: srv.port });
    await connectedAs(alice, 'alice', 20_000);
    await connectedAs(bob, 'bob', 20_000);
    await gone(alice.getByRole('alert').getByText(/Connection lost/));
    await systemLine(alice, 'Reconnected as alice.').waitFor();
    assert.ok(sockets.length >= 1);
    assert.ok(sockets.every((u) => u === `ws://127.0.0.1:${srv.port}/ws`), sockets.join(' '));

    // History is kept, and the new server knows the page: name, online list, room.
    await chat(alice, 'alice', 'before the restart').waitFor();
    await online(alice, 'bob').waitFor();
    await convButton(alice, '#persist').click();
    await alice.getByRole('list', { name: 'Members of #persist' }).locator('li[data-name="alice"]').waitFor();
    await systemLine(alice, 'Rejoined #persist.').waitFor();
    await convButton(alice, 'Everyone').click();
    const carol = await tcp(again, 'carol');
    carol.send('LIST');
    await carol.expect('USER alice');
    await carol.expect('USER bob');
    await carol.expect('OK LIST 3');
    carol.send('WHO #persist');
    await carol.expect('MEMBER #persist @alice');
    await carol.expect('OK WHO #persist 1');

    // And it works.
    await say(alice, 'after the restart');
    await chat(bob, 'alice', 'after the restart').waitFor();
    await carol.expect('MESSAGE alice after the restart');
    await convButton(alice, '#persist').click();
    await say(alice, 'still here');
    carol.send('JOIN #persist');
    await carol.expect('OK JOIN #persist 2');
    await say(alice, 'hello carol');
    await carol.expect('SAY #persist alice hello carol');
    noScriptRan(alice);
  });

  test('a reload takes the session back: name, rooms and DMs kept, nobody sees it leave', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    const bob = await user(srv, 'bob');
    await alice.waitForFunction(() => sessionStorage.getItem('natter.session')?.startsWith('nr_'));
    await say(alice, '/join #keep');
    await alice.getByRole('heading', { name: '#keep', exact: true }).waitFor();
    await say(alice, '/dm bob psst');
    await convButton(bob, 'alice').click();
    await chat(bob, 'alice', 'psst').waitFor();
    const carol = await tcp(srv, 'carol');

    await alice.reload();
    await connectedAs(alice, 'alice');
    await systemLine(alice, 'Welcome back, alice.').waitFor();
    // The room and the DM are still there, and the room knows its members.
    await convButton(alice, '#keep').click();
    await alice.getByRole('list', { name: 'Members of #keep' }).locator('li[data-name="alice"]').waitFor();
    await convButton(alice, 'bob').waitFor();
    // What was said while the page reloaded reaches it.
    carol.send('JOIN #keep');
    await carol.expect('OK JOIN #keep 2');
    carol.send('SAY #keep said during the reload');
    await chat(alice, 'carol', 'said during the reload').waitFor();
    // Nobody saw alice leave or come back.
    carol.send('LIST');
    await carol.expect('OK LIST 3');
    assert.ok(!carol.lines.some((l) => l.startsWith('OFFLINE alice') || l.startsWith('ONLINE alice')), carol.lines.join('\n'));
    // bob's page shows no departure either (it says "went offline." when someone leaves).
    await convButton(bob, 'Everyone').click();
    carol.send('MESSAGE after the reload');
    await chat(bob, 'carol', 'after the reload').waitFor();
    assert.equal(await bob.getByText('alice went offline.').count(), 0);
    assert.equal(await bob.getByText('alice is online.').count(), 0);
    noScriptRan(alice);
  });

  test('an account keeps its name: sign up, reload signed in, refused to others, sign out', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    await alice.getByRole('button', { name: 'Account' }).click();
    const dialog = alice.getByRole('dialog', { name: 'Account' });
    await dialog.getByText('You are chatting as alice').waitFor();
    await dialog.getByLabel('Choose a password').fill('short');
    await dialog.getByRole('button', { name: 'Create account' }).click();
    await dialog.getByRole('alert').getByText(/^A password is 8 to 128 characters/).waitFor();
    await dialog.getByLabel('Choose a password').fill('correct-horse');
    await dialog.getByRole('button', { name: 'Create account' }).click();
    await dialog.getByText('Signed in as alice').waitFor();
    await alice.waitForFunction(() => JSON.parse(localStorage.getItem('natter.account') || 'null')?.token?.startsWith('nt_'));
    const kept = await alice.evaluate(() => localStorage.getItem('natter.account'));
    assert.ok(!kept.includes('correct-horse'), 'the password is never stored');
    await dialog.getByRole('button', { name: 'Close' }).click();

    // A reload signs in again by itself, with the token.
    await alice.reload();
    await connectedAs(alice, 'alice');
    // The online list marks the name as an account.
    await alice.locator('#online-list li[data-name="alice"] .account-mark').waitFor();
    assert.equal(await alice.evaluate(() => window.natter.account), 'alice');

    // Others cannot have the name: the page says whose it is and asks for the password.
    const carol = await tcp(srv, 'carol');
    carol.send('REGISTER alice');
    await carol.expect(/^ERROR NAME_(RESERVED|TAKEN) /);
    const bob = await openPage(h.browser, srv);
    defer(() => bob.context().close());
    await bob.getByLabel('Your name').fill('alice');
    await bob.getByLabel('Your name').press('Enter');
    await bob.getByRole('alert').getByText("alice is someone's account. If it is yours, enter its password.").waitFor();
    assert.equal(await bob.evaluate(() => document.activeElement.id), 'account-password');

    // Signing out forgets the token and shows the welcome form.
    await alice.getByRole('button', { name: 'Account' }).click();
    await dialog.getByRole('button', { name: 'Sign out' }).click();
    await alice.getByLabel('Your name').waitFor();
    assert.equal(await alice.evaluate(() => localStorage.getItem('natter.account')), null);
    // And signing in with the password works from the form.
    await bob.getByLabel(/^Password/).fill('correct-horse');
    await bob.getByLabel(/^Password/).press('Enter');
    await connectedAs(bob, 'alice');
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('a DM sent while the account was offline shows on sign-in, at the time it was sent', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const first = await tcp(srv, 'alice');
    first.send('ACCOUNT CREATE correct-horse');
    await first.expect('OK ACCOUNT CREATE alice');
    first.send('CLOSE');
    await first.expect(/^BYE CLOSED/);
    const carol = await tcp(srv, 'carol');
    carol.send('ACCOUNT CREATE correct-horse');
    await carol.expect('OK ACCOUNT CREATE carol');
    carol.send('DM alice you missed this');
    await carol.expect('OK DM alice QUEUED');
    carol.send('HISTORY alice');
    const logged = await carol.expect(/^LOGGED alice /);
    const sentAt = logged.split(' ')[3];
    await carol.expect('OK HISTORY alice 1');

    const alice = await openPage(h.browser, srv);
    defer(() => alice.context().close());
    await alice.getByLabel('Your name').fill('alice');
    await alice.getByLabel('Your name').press('Enter');
    await alice.getByLabel(/^Password/).fill('correct-horse');
    await alice.getByLabel(/^Password/).press('Enter');
    await connectedAs(alice, 'alice');
    await convButton(alice, 'carol').click();
    const waited = chat(alice, 'carol', 'you missed this');
    await waited.waitFor();
    assert.equal(await waited.locator('time').getAttribute('datetime'), sentAt);
    noScriptRan(alice);
  });

  test('name errors show inline with the server\'s reason, and a retry needs no reconnect', async (t) => {
    t.after(cleanup);
    const srv = await server();
    await tcp(srv, 'taken');
    const sockets = [];
    const page = await openPage(h.browser, srv, { beforeGoto: (p) => p.on('websocket', (ws) => sockets.push(ws)) });
    defer(() => page.context().close());
    await page.getByRole('status').getByText('Connected.').waitFor();

    const name = page.getByLabel('Your name');
    const error = page.locator('#name-error');
    await expectFocused(page, 'name-input');

    await name.fill('TAKEN');
    await page.keyboard.press('Enter');
    await error.getByText('The name TAKEN is taken; choose another.', { exact: true }).waitFor();
    assert.equal(await name.getAttribute('aria-invalid'), 'true');
    assert.equal(await error.getAttribute('role'), 'alert');

    await name.fill('two words');
    await page.keyboard.press('Enter');
    await error.getByText('Names cannot contain spaces.', { exact: true }).waitFor();

    await name.fill('9lives');
    await page.keyboard.press('Enter');
    await error.getByText(/^A name must start with a letter .*\.$/).waitFor();

    await register(page, 'dora');
    assert.equal(sockets.length, 1, 'the retries used the first connection');
    // The message box has the focus: Enter sends.
    await expectFocused(page, 'composer-input');
    await page.keyboard.type('/name Dora_2');
    await page.keyboard.press('Enter');
    await connectedAs(page, 'Dora_2');
    await systemLine(page, 'You are now known as Dora_2.').waitFor();
    await say(page, '/name taken');
    await systemLine(page, 'Could not change name: the name taken is taken; choose another.').waitFor();
    await connectedAs(page, 'Dora_2');
    noScriptRan(page);
  });

  test('slash commands answer in the conversation', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    const carol = await tcp(srv, 'carol');
    carol.send('JOIN #club');
    await carol.expect('OK JOIN #club 1');
    await online(alice, 'carol').waitFor();

    await say(alice, '/rooms');
    await systemLine(alice, '#club — 1 member').waitFor();
    await say(alice, '/list');
    await systemLine(alice, 'Online (2): alice, carol').waitFor();
    await say(alice, '/help');
    await systemLine(alice, '/join #room').waitFor();
    await messages(alice).locator('li.mono').filter({ hasText: 'REGISTER' }).first().waitFor();
    await say(alice, '/who');
    await systemLine(alice, '/who works in a room you are in.').waitFor();
    await say(alice, '/frob');
    await systemLine(alice, 'Unknown command /frob').waitFor();
    await say(alice, '//not a command');
    await carol.expect('MESSAGE alice /not a command');

    await say(alice, '/join club');
    await alice.getByRole('heading', { name: '#club', exact: true }).waitFor();
    await say(alice, '/who');
    await systemLine(alice, 'Members of #club (2): @carol, alice').waitFor();
    await say(alice, '/topic');
    await systemLine(alice, '#club has no topic.').waitFor();
    await say(alice, '/topic mine now');
    await systemLine(alice, 'Could not set the topic: only operators of #club may do that.').waitFor();

    // Kicked by the operator: the room says so and stops taking messages.
    carol.send('KICK #club alice behave');
    await carol.expect('OK KICK #club alice');
    await systemLine(alice, 'You were removed from #club by carol (behave).').waitFor();
    await alice.locator('#conv-topic').getByText('You are not in this room.').waitFor();
    await say(alice, 'anyone?');
    await systemLine(alice, 'You are not in #club').waitFor();

    await say(alice, '/dm nobody hello');
    await alice.getByRole('heading', { name: '@ nobody', exact: true }).waitFor();
    await messages(alice).locator('li.failed').getByText('Not delivered: no user named nobody is online.').waitFor();

    // /quit ends the session without reconnecting; the banner offers to connect again.
    await say(alice, '/quit');
    await carol.expect('OFFLINE alice');
    await alice.getByRole('alert').getByText('You left the chat.').waitFor();
    await alice.getByRole('button', { name: 'Connect again' }).click();
    await connectedAs(alice, 'alice');
    await carol.expect('ONLINE alice');
    noScriptRan(alice);
  });

  test('DMs and mentions notify on the desktop when the tab is hidden, once opted in, unless muted', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const page = await openPage(h.browser, srv, { permissions: ['notifications'] });
    defer(() => page.context().close());
    // Record notifications and let the test say when the tab is hidden.
    await page.addInitScript(() => {
      const shown = [];
      window.__shown = shown;
      window.__hidden = false;
      Object.defineProperty(Document.prototype, 'hidden', { get: () => window.__hidden, configurable: true });
      const Real = window.Notification;
      window.Notification = class {
        constructor(title, options) { shown.push({ title, body: options?.body }); }
        close() {}
        static get permission() { return Real.permission; }
        static requestPermission() { return Real.requestPermission(); }
      };
    });
    await page.reload();
    await register(page, 'alice');
    const carol = await tcp(srv, 'carol');

    carol.send('DM alice before opting in');
    await carol.expect('OK DM alice');
    await convButton(page, 'carol').waitFor();
    await page.getByRole('checkbox', { name: 'Notify me of DMs and mentions' }).check();
    await page.evaluate(() => { window.__hidden = true; });
    carol.send('DM alice <b>while hidden</b>');
    await carol.expect('OK DM alice');
    await page.waitForFunction(() => window.__shown.length === 1, null, { timeout: WAIT });
    assert.deepEqual(await page.evaluate(() => window.__shown),
      [{ title: 'natter: message from carol', body: '<b>while hidden</b>' }]);
    await page.evaluate(() => { window.__hidden = false; });
    carol.send('DM alice while visible');
    await carol.expect('OK DM alice');
    await convButton(page, 'carol').getByText('3', { exact: true }).waitFor();
    assert.equal(await page.evaluate(() => window.__shown.length), 1);

    // A mention of alice in Everyone notifies too; once Everyone is muted, it does not.
    await convButton(page, 'carol').click();
    await page.evaluate(() => { window.__hidden = true; });
    carol.send('MESSAGE lunch, Alice?');
    await carol.expect(/^OK MESSAGE/);
    await page.waitForFunction(() => window.__shown.length === 2, null, { timeout: WAIT });
    assert.deepEqual(await page.evaluate(() => window.__shown[1]),
      { title: 'natter: carol mentioned you in Everyone', body: 'lunch, Alice?' });
    await page.evaluate(() => { window.__hidden = false; });
    await convButton(page, 'Everyone').click();
    await page.getByRole('button', { name: 'Mute Everyone' }).click();
    await page.evaluate(() => { window.__hidden = true; });
    carol.send('MESSAGE alice, still there?');
    await carol.expect(/^OK MESSAGE/);
    carol.send('DM alice a DM after the muted mention');
    await carol.expect('OK DM alice');
    await page.waitForFunction(() => window.__shown.length === 3, null, { timeout: WAIT });
    assert.equal(await page.evaluate(() => window.__shown[2].body), 'a DM after the muted mention');
  });

  test('on a phone-width screen the side panels collapse and open on demand', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const bob = await user(srv, 'bob');
    const alice = await user(srv, 'alice', { viewport: { width: 375, height: 740 } });
    await say(bob, 'hello small screen');
    await chat(alice, 'bob', 'hello small screen').waitFor();
    const nav = alice.locator('#sidebar');
    const people = alice.locator('#people');
    assert.equal(await nav.isVisible(), false);
    assert.equal(await people.isVisible(), false);
    assert.equal(await alice.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true);
    const box = await composer(alice).boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 375, 'the message box fits');

    await alice.getByRole('button', { name: 'Show people' }).click();
    await online(alice, 'bob').waitFor({ state: 'visible' });
    await alice.getByRole('button', { name: 'bob: send a direct message' }).click();
    await alice.getByRole('heading', { name: '@ bob', exact: true }).waitFor();
    await people.waitFor({ state: 'hidden' });
    await say(alice, 'tiny hello');
    await convButton(bob, 'alice').getByText('1', { exact: true }).waitFor();
    await convButton(bob, 'alice').click();
    await chat(bob, 'alice', 'tiny hello').waitFor();

    await alice.getByRole('button', { name: 'Show conversations' }).click();
    await nav.waitFor({ state: 'visible' });
    await convButton(alice, 'Everyone').click();
    await nav.waitFor({ state: 'hidden' });
    await alice.getByRole('heading', { name: 'Everyone', exact: true }).waitFor();

    // The header's mute button fits beside a long room name, and works.
    await say(alice, '/join #a-rather-long-room-name');
    await alice.getByRole('heading', { name: '#a-rather-long-room-name', exact: true }).waitFor();
    const mute = alice.getByRole('button', { name: 'Mute #a-rather-long-room-name' });
    const muteBox = await mute.boundingBox();
    assert.ok(muteBox.x >= 0 && muteBox.x + muteBox.width <= 375, 'the mute button fits');
    await mute.click();
    assert.equal(await mute.getAttribute('aria-pressed'), 'true');
    assert.equal(await alice.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true);
    // The jump box, from the side bar: it fits the screen, and choosing closes the side bar.
    await alice.getByRole('button', { name: /^Show conversations/ }).click();
    await alice.getByRole('button', { name: 'Jump to…' }).click();
    const jump = alice.getByRole('dialog', { name: 'Jump to a conversation' });
    const jumpBox = await jump.boundingBox();
    assert.ok(jumpBox.x >= 0 && jumpBox.x + jumpBox.width <= 375, 'the jump box fits');
    await jump.getByRole('combobox').fill('bo');
    await jump.getByRole('option', { name: /@ bob/ }).click();
    await alice.getByRole('heading', { name: '@ bob', exact: true }).waitFor();
    await nav.waitFor({ state: 'hidden' });
  });
});

// The server's password and registration deadline have no command-line switches yet, so
// this test puts a scripted server on the page's WebSocket (Playwright's routeWebSocket)
// speaking the protocol as crates/natter-server/src/session.rs does.
describe('the page against a scripted server', { timeout: 60_000 }, () => {
  test('a server password is asked for, checked, and given again on reconnect', async (t) => {
    t.after(cleanup);
    const srv = await server(); // serves the page; its WebSocket is replaced below
    const conns = [];
    const page = await openPage(h.browser, srv, {
      beforeGoto: (p) => p.routeWebSocket(/\/ws$/, (ws) => {
        const got = [];
        conns.push({ ws, got });
        let authed = false;
        ws.onMessage((line) => {
          got.push(line);
          const [verb, ...rest] = String(line).split(' ');
          if (verb === 'PASSWORD') {
            if (rest.join(' ') === 'open sesame') {
              authed = true;
              ws.send('OK PASSWORD');
            } else {
              ws.send('ERROR BAD_PASSWORD wrong password');
            }
          } else if (verb === 'REGISTER') {
            ws.send(authed ? `OK REGISTER ${rest[0]}` : 'ERROR PASSWORD_REQUIRED this server needs a password: PASSWORD <password> first');
          } else if (verb === 'LIST') {
            ws.send('USER alice');
            ws.send('OK LIST 1');
          } else {
            // A server older than SESSION, TAGS, MULTILINE and HISTORY: the page does without
            // a resume token, tags, escaped texts and history.
            ws.send(`ERROR UNKNOWN_COMMAND unknown command ${verb}; type HELP for the list of commands`);
          }
        });
        ws.send('HELLO natter (scripted): type HELP for the list of commands');
      }),
    });
    defer(() => page.context().close());

    await page.getByLabel('Your name').fill('alice');
    await page.getByLabel('Your name').press('Enter');
    const password = page.getByLabel('Server password');
    await page.locator('#password-error').getByText('This server needs a password.').waitFor();
    await expectFocused(page, 'password-input');
    await password.fill('guess');
    await password.press('Enter');
    await page.locator('#password-error').getByText('Wrong password.', { exact: true }).waitFor();
    await password.fill('open sesame');
    await password.press('Enter');
    await connectedAs(page, 'alice');
    await page.waitForFunction(() => window.natter.pending === 0);
    assert.deepEqual(conns[0].got, ['TAGS ON', 'MULTILINE ON', 'REGISTER alice', 'PASSWORD guess', 'PASSWORD open sesame', 'REGISTER alice', 'HISTORY *', 'LIST', 'SESSION', 'ACCOUNTS']);

    // The server goes away; the page comes back with the password, then its name.
    await conns[0].ws.close();
    await page.getByRole('alert').getByText(/Connection lost/).waitFor();
    await connectedAs(page, 'alice', 20_000);
    assert.equal(conns.length, 2);
    await page.waitForFunction(() => window.natter.pending === 0);
    assert.deepEqual(conns[1].got, ['TAGS ON', 'MULTILINE ON', 'PASSWORD open sesame', 'REGISTER alice', 'LIST', 'SESSION', 'ACCOUNTS']);
    noScriptRan(page);
  });

  test('after a registration timeout the page waits for the person instead of looping', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const conns = [];
    const page = await openPage(h.browser, srv, {
      beforeGoto: async (p) => {
        await p.clock.install(); // the page's timers run only when the test says so
        await p.routeWebSocket(/\/ws$/, (ws) => {
        const n = conns.push(ws);
        ws.onMessage((line) => {
          const [verb, name] = String(line).split(' ');
          if (verb === 'REGISTER') ws.send(`OK REGISTER ${name}`);
          else if (verb === 'LIST') ws.send('OK LIST 0');
          else ws.send(`ERROR UNKNOWN_COMMAND unknown command ${verb}`);
        });
        ws.send('HELLO natter (scripted)');
        if (n === 1) {
          ws.send('BYE TIMEOUT register within the time allowed (REGISTER <name>)');
          ws.close();
        }
        });
      },
    });
    defer(() => page.context().close());
    await page.getByRole('status').getByText('press Join to connect again').waitFor();
    // A minute of the page's time passes: a reconnect loop would have dialled many times.
    await page.clock.runFor(60_000);
    assert.equal(conns.length, 1);
    await page.getByLabel('Your name').fill('late');
    await page.getByLabel('Your name').press('Enter');
    await connectedAs(page, 'late');
    assert.equal(conns.length, 2);
  });
});
