// End-to-end tests of the page's everyday comforts, as in the chat apps people already use:
// names, keyboard and focus, mentions and muting, times in the reader's locale, connection
// errors in words, and user text that cannot pass for the page's own lines.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connectedAs, harness, noScriptRan } from './helpers.mjs';

const h = harness();
const { cleanup, server } = h;

describe('the page polished', { timeout: 60_000 }, () => {
  test('a remembered name is replaced by typing, and the hint gives the whole rule', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const page = await h.page(srv, {
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
    assert.match(hint, /first is a letter or one of/);
    noScriptRan(page);
  });
});
