// End-to-end tests of messages of several lines: the page's message box (Shift+Enter, Enter,
// a paste), how the page shows lines and code, and what another page, a native client
// without MULTILINE (one event a line) and one with it (one escaped line) receive.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  composer, connectedAs, harness, messages, noScriptRan, say, sentLines, shownTexts, systemLine,
  WIDTHS,
} from './helpers.mjs';

const h = harness();
const { cleanup, defer, page: openPage, server, tcp, user } = h;

/** Three lines of code, as pasted; its second line holds a backslash. */
const CODE = ['fn main() {', '    println!("hi\\n");', '}'];

/** The text element of the last message from `from` in the visible conversation. */
const lastText = (page, from) => messages(page).locator('li.msg:not(.system)')
  .filter({ has: page.locator('.from').getByText(from, { exact: true }) })
  .last().locator('.text');

/** The lines of the last message from `from`, as the page lays them out. */
async function shownLines(page, from, want) {
  const text = lastText(page, from);
  await page.waitForFunction(
    ([el, n]) => el && el.innerText.split('\n').length === n,
    [await text.elementHandle(), want],
  );
  return (await text.innerText()).split('\n');
}

/** Puts `text` on the clipboard and pastes it into the message box, as a person does. */
async function paste(page, text) {
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  await composer(page).focus();
  await page.evaluate((t) => navigator.clipboard.writeText(t), text);
  await page.keyboard.press('ControlOrMeta+V');
}

/** A native client that said MULTILINE ON. */
async function multilineClient(srv, name) {
  const c = await tcp(srv, name);
  c.send('MULTILINE ON');
  await c.expect('OK MULTILINE ON');
  return c;
}

/** Waits for `lines` as consecutive lines of a TCP client, the first matched anywhere after. */
async function consecutive(client, lines) {
  await client.expect(lines[0]);
  const at = client.lines.indexOf(lines[0]);
  for (let i = 1; i < lines.length; i++) await client.expect(lines[i]);
  assert.deepEqual(client.lines.slice(at, at + lines.length), lines, 'one event a line, in order');
}

describe('messages of several lines', () => {
  for (const [label, viewport] of WIDTHS) {
    test(`${label}: a pasted three-line code block arrives as three lines everywhere`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const carol = await tcp(srv, 'carol'); // knows nothing of MULTILINE, as nc
      const dave = await multilineClient(srv, 'dave');
      let sent;
      const alice = await user(srv, 'alice', { viewport, beforeGoto: (p) => { sent = sentLines(p); } });
      const bob = await user(srv, 'bob', { viewport });
      assert.ok(sent.includes('MULTILINE ON'), 'the page says MULTILINE ON');
      assert.ok(sent.indexOf('TAGS ON') < sent.indexOf('MULTILINE ON'), 'after TAGS ON');

      const box = composer(alice);
      const oneLine = (await box.boundingBox()).height;
      await paste(alice, `${CODE.join('\r\n')}\r\n`);
      assert.equal((await box.inputValue()).replace(/\r\n/g, '\n'), `${CODE.join('\n')}\n`);
      // The box grows to show what was pasted, and fits the screen.
      const grown = await box.boundingBox();
      assert.ok(grown.height > oneLine * 1.8, `the box grew (${oneLine} -> ${grown.height})`);
      assert.ok(grown.x + grown.width <= (viewport?.width ?? 1280), 'the box fits');
      await box.press('Enter');
      assert.equal(await box.inputValue(), '');

      // One line on the wire, escaped.
      await dave.expect('MESSAGE alice fn main() {\\n    println!("hi\\\\n");\\n}');
      assert.ok(sent.includes('MESSAGE fn main() {\\n    println!("hi\\\\n");\\n}'), sent.join('\n'));
      // The documented per-line form for a client without MULTILINE.
      await consecutive(carol, CODE.map((l) => `MESSAGE alice ${l}`));
      // Three lines in the other page and in the sender's own.
      assert.deepEqual(await shownLines(bob, 'alice', 3), CODE);
      assert.deepEqual(await shownLines(alice, 'alice', 3), CODE);
      // The box is back to one line.
      assert.ok((await box.boundingBox()).height < oneLine * 1.2);

      // From history too: a page opened later.
      const erin = await user(srv, 'erin', { viewport });
      assert.deepEqual(await shownLines(erin, 'alice', 3), CODE);
      // And what a native MULTILINE client says shows as its lines.
      dave.send('MESSAGE one\\ntwo \\\\ three');
      await dave.expect(/^OK MESSAGE/);
      assert.deepEqual(await shownLines(bob, 'dave', 2), ['one', 'two \\ three']);
      for (const p of [alice, bob, erin]) noScriptRan(p);
    });

    test(`${label}: Shift+Enter makes a new line, Enter sends, Up brings the lines back`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const carol = await tcp(srv, 'carol');
      const alice = await user(srv, 'alice', { viewport });
      const box = composer(alice);

      await say(alice, 'an older one');
      await carol.expect('MESSAGE alice an older one');
      await box.pressSequentially('first');
      await box.press('Shift+Enter');
      await box.pressSequentially('second');
      assert.equal(await box.inputValue(), 'first\nsecond');
      await box.press('Enter');
      await consecutive(carol, ['MESSAGE alice first', 'MESSAGE alice second']);
      assert.deepEqual(await shownLines(alice, 'alice', 2), ['first', 'second']);

      // Up in the empty box: both lines; Up again moves to the first line, then to the one
      // sent before; Down comes back.
      await box.press('ArrowUp');
      assert.equal(await box.inputValue(), 'first\nsecond');
      await box.press('ArrowUp');
      assert.equal(await box.inputValue(), 'first\nsecond');
      await box.press('ArrowUp');
      assert.equal(await box.inputValue(), 'an older one');
      await box.press('ArrowDown');
      assert.equal(await box.inputValue(), 'first\nsecond');

      // A command is one line.
      await box.fill('/topic a');
      await box.press('Shift+Enter');
      await box.pressSequentially('b');
      await box.press('Enter');
      await systemLine(alice, 'A command takes one line').waitFor();
      noScriptRan(alice);
    });
  }

  test('a server without MULTILINE (scripted) gets one message a line, and its texts are literal', async (t) => {
    t.after(cleanup);
    const srv = await server(); // serves the page; its WebSocket is replaced below
    const got = [];
    let socket;
    const page = await openPage(srv, {
      beforeGoto: (p) => p.routeWebSocket(/\/ws$/, (ws) => {
        socket = ws;
        ws.onMessage((line) => {
          got.push(String(line));
          const [verb, ...rest] = String(line).split(' ');
          if (verb === 'REGISTER') ws.send(`OK REGISTER ${rest[0]}`);
          else if (verb === 'LIST') ws.send('OK LIST 0');
          else if (verb === 'MESSAGE') ws.send('OK MESSAGE');
          else ws.send(`ERROR UNKNOWN_COMMAND unknown command ${verb}`);
        });
        ws.send('HELLO natter (scripted, older)');
      }),
    });
    defer(() => page.context().close());
    await page.getByLabel('Your name').fill('alice');
    await page.getByLabel('Your name').press('Enter');
    await connectedAs(page, 'alice');
    await page.waitForFunction(() => window.natter.pending === 0);

    const box = composer(page);
    await box.fill('one\n\ntwo \\n');
    await box.press('Enter');
    await page.waitForFunction(() => window.natter.pending === 0);
    assert.deepEqual(got.filter((l) => l.startsWith('MESSAGE')), ['MESSAGE one', 'MESSAGE two \\n']);
    socket.send('MESSAGE bob a\\nb');
    await lastText(page, 'bob').waitFor();
    assert.deepEqual(await shownTexts(page), ['one', 'two \\n', 'a\\nb']);
    noScriptRan(page);
  });

  test('code in backticks is shown monospaced, in the log and in search results, and markup stays text', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const dave = await multilineClient(srv, 'dave');
    const bob = await user(srv, 'bob');
    dave.send('MESSAGE run `cargo test` <b>now</b>\\n```rust\\nlet x = "<img src=x onerror=alert(1)>";\\n```\\nafter');
    await dave.expect(/^OK MESSAGE/);
    const text = lastText(bob, 'dave');
    await text.locator('pre').waitFor();
    const inline = text.locator('code').first();
    assert.equal(await inline.textContent(), 'cargo test');
    assert.equal(await text.locator('pre code').textContent(), 'let x = "<img src=x onerror=alert(1)>";');
    assert.deepEqual((await text.innerText()).split('\n'), [
      'run cargo test <b>now</b>',
      'let x = "<img src=x onerror=alert(1)>";',
      'after',
    ]);
    for (const code of [inline, text.locator('pre')]) {
      const font = await code.evaluate((e) => getComputedStyle(e).fontFamily);
      assert.match(font, /monospace/, 'monospaced');
    }
    const prose = await text.evaluate((e) => getComputedStyle(e).fontFamily);
    assert.doesNotMatch(prose, /^ui-monospace/, 'the rest is not');
    assert.equal(await text.locator('b, img').count(), 0, 'no element from the text');

    // A search result shows its lines and code the same way (inside its button: no <pre>).
    await bob.getByRole('button', { name: 'Search messages' }).click();
    const dialog = bob.getByRole('dialog', { name: 'Search messages' });
    await dialog.getByLabel('Words to find').fill('after');
    await dialog.getByLabel('Words to find').press('Enter');
    await dialog.getByRole('status').getByText('1 message, newest first').waitFor();
    const found = dialog.getByRole('list', { name: 'Search results' }).locator('.text');
    assert.deepEqual(await found.locator('code').allTextContents(), ['cargo test', 'let x = "<img src=x onerror=alert(1)>";']);
    assert.deepEqual((await found.innerText()).split('\n'), [
      'run cargo test <b>now</b>',
      'let x = "<img src=x onerror=alert(1)>";',
      'after',
    ]);
    assert.equal(await found.locator('pre, b, img').count(), 0);
    noScriptRan(bob);
  });
});
