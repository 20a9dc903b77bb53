// End-to-end tests of "… is typing" in the page: what the page tells the server as its person
// types, clears and sends, and what it shows of others, from pages and from a native client.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chat, composer, harness, noScriptRan, openConv, say } from './helpers.mjs';

const h = harness();
const { cleanup, server, tcp, user } = h;

/** The line above the message box. */
const typing = (page) => page.locator('#typing');

/** Waits until the line above the message box says exactly `text`. */
async function shows(page, text) {
  await page.waitForFunction((t) => document.getElementById('typing').textContent === t, text);
}

describe('who is typing', () => {
  test('shows above the box, and goes when they send or clear', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    carol.send('TAGS ON');
    await carol.expect(/OK TAGS ON$/);
    const alice = await user(srv, 'alice');
    const bob = await user(srv, 'bob');

    await composer(alice).fill('hello th');
    await shows(bob, 'alice is typing…');
    await carol.expect(/ TYPING \* alice active$/);
    // The person typing does not see themselves.
    assert.equal(await typing(alice).textContent(), '');

    // Clearing the box says done.
    await composer(alice).fill('');
    await carol.expect(/ TYPING \* alice done$/);
    await shows(bob, '');

    // A native client's TYPING shows too; two at once are named together.
    await composer(alice).fill('again');
    await shows(bob, 'alice is typing…');
    carol.send('TYPING * active');
    await carol.expect(/OK TYPING active$/);
    await shows(bob, 'alice and carol are typing…');

    // The message is what they typed: it ends their line.
    await say(alice, 'again, hello');
    await chat(bob, 'alice', 'again, hello').waitFor();
    await shows(bob, 'carol is typing…');
    carol.send('MESSAGE done now');
    await carol.expect(/OK MESSAGE \d+$/);
    await shows(bob, '');
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('keeps saying active while the person types on, with no done in between', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    carol.send('TAGS ON');
    await carol.expect(/OK TAGS ON$/);
    // The page's clock moves only when the test says so.
    const alice = await user(srv, 'alice', { beforeGoto: (p) => p.clock.install() });
    await composer(alice).fill('hello th');
    await carol.expect(/ TYPING \* alice active$/);
    const from = carol.lines.length;
    // Past the 3 s repeat: the next key press says active again, and only that.
    await alice.clock.runFor(3500);
    await composer(alice).fill('hello there');
    await carol.expect(/ TYPING \* alice active$/);
    await composer(alice).fill('');
    await carol.expect(/ TYPING \* alice done$/);
    const told = carol.lines.slice(from).filter((l) => / TYPING \* alice /.test(l)).map((l) => l.split(' ').at(-1));
    assert.deepEqual(told, ['active', 'done']);
    noScriptRan(alice);
  });

  test('belongs to its conversation: a DM\'s typing shows in the DM only', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    const bob = await user(srv, 'bob');
    carol.send('DM bob hi bob');
    await carol.expect('OK DM bob');
    carol.send('TYPING bob active');
    await carol.expect(/OK TYPING active$/);
    // Bob is looking at Everyone: nothing there.
    assert.equal(await typing(bob).textContent(), '');
    await openConv(bob, 'carol');
    await shows(bob, 'carol is typing…');
    noScriptRan(bob);
  });
});
