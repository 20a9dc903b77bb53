// End-to-end tests that every change of state shows everywhere the page shows that state: a
// rename (the page's own and another's), a kick, a part, a topic and a new operator, in the
// online list, a room's member list, the conversation's header and the DM list. Each test
// changes one thing live and looks at every place it appears.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  closePanels, connectedAs, convButton, gone, harness, heading, member, noScriptRan, online,
  openPeople, say, systemLine, WIDTHS,
} from './helpers.mjs';

const h = harness();
const { cleanup, server, tcp, user } = h;

/** The conversation header's second line (a room's topic, a DM's presence). */
const topicLine = (page) => page.locator('#conv-topic');

/** Joins `room` from the message box and waits for its header. */
async function join(page, room) {
  await say(page, `/join ${room}`);
  await heading(page, room).waitFor();
}

describe('a change shows everywhere', { timeout: 60_000 }, () => {
  for (const [label, viewport] of WIDTHS) {
    test(`${label}: own rename: the online list, the member list and the status say the new name`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const bob = await tcp(srv, 'bob');
      const page = await user(srv, 'willa', { viewport });
      await join(page, '#den');
      // On a phone the lists are in the people panel, opened to look and closed to write.
      await openPeople(page);
      await member(page, '#den', 'willa').waitFor();
      await online(page, 'bob').waitFor();
      await closePanels(page);

      await say(page, '/name pia');
      await bob.expect('RENAMED willa pia');
      await connectedAs(page, 'pia');
      await systemLine(page, 'You are now known as pia.').waitFor();
      await openPeople(page);
      // The online list: the new name, marked as the page's own, with no DM offered.
      const me = online(page, 'pia').getByRole('button', { name: 'pia (you)' });
      await me.waitFor();
      assert.equal(await me.isDisabled(), true);
      await gone(online(page, 'willa'));
      // The room's member list (the room is shown) and what the account dialog says.
      await member(page, '#den', 'pia').getByText('you').waitFor();
      await gone(member(page, '#den', 'willa'));
      await closePanels(page);
      await page.getByRole('button', { name: 'Account' }).click();
      const account = page.getByRole('dialog', { name: 'Account' });
      await account.getByText('You are chatting as pia').waitFor();
      const box = await account.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= (viewport?.width ?? 1280), 'the account dialog fits the screen');
      await page.keyboard.press('Escape');
      noScriptRan(page);
    });
  }

  test('another\'s rename: the online list, the DM list, the DM\'s header and the member list', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    const bob = await tcp(srv, 'bob');
    bob.send('JOIN #den');
    await bob.expect(/^OK JOIN #den/);
    await join(alice, '#den');
    await member(alice, '#den', 'bob').waitFor();
    bob.send('DM alice hello');
    await bob.expect('OK DM alice');
    await convButton(alice, 'bob').click();
    await heading(alice, '@ bob').waitFor();

    bob.send('REGISTER bobby');
    await bob.expect('OK REGISTER bobby');
    // Live, in the DM shown: its header, its entry in the DM list, the online list.
    await heading(alice, '@ bobby').waitFor();
    await topicLine(alice).getByText('Direct message — online').waitFor();
    await convButton(alice, 'bobby').waitFor();
    await gone(convButton(alice, 'bob'));
    await online(alice, 'bobby').getByRole('button', { name: 'bobby: send a direct message' }).waitFor();
    await gone(online(alice, 'bob'));
    await systemLine(alice, 'bob is now known as bobby.').waitFor();
    // The conversation follows the person: what alice writes reaches the new name.
    await say(alice, 'nice name');
    await bob.expect('DM alice nice name');
    // And the room's member list.
    await convButton(alice, '#den').click();
    await member(alice, '#den', 'bobby').waitFor();
    await gone(member(alice, '#den', 'bob'));
    await systemLine(alice, 'bob is now known as bobby.').waitFor();
    noScriptRan(alice);
  });

  test('a kick: the member list, the room list and the header of the one kicked', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    const bob = await tcp(srv, 'bob');
    bob.send('JOIN #den');
    await bob.expect(/^OK JOIN #den/);
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    await member(alice, '#den', 'bob').waitFor();

    // Someone else is kicked: gone from the member list shown, with the reason.
    carol.send('KICK #den bob spam');
    await carol.expect('OK KICK #den bob');
    await systemLine(alice, 'bob was removed from #den by carol (spam).').waitFor();
    await gone(member(alice, '#den', 'bob'));
    await member(alice, '#den', 'carol').waitFor();

    // The page's own person is kicked: the header, the room list and the people panel say so.
    carol.send('KICK #den alice');
    await carol.expect('OK KICK #den alice');
    await systemLine(alice, 'You were removed from #den by carol.').waitFor();
    await topicLine(alice).getByText('You are not in this room.').waitFor();
    await gone(convButton(alice, '#den'));
    assert.equal(await alice.getByRole('list', { name: 'Members of #den' }).isVisible(), false);
    assert.equal(await alice.getByRole('button', { name: 'Leave' }).isVisible(), false);
    noScriptRan(alice);
  });

  test('a part: the member list drops the person, with their reason', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const bob = await tcp(srv, 'bob');
    bob.send('JOIN #den');
    await bob.expect(/^OK JOIN #den/);
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    await member(alice, '#den', 'bob').waitFor();
    bob.send('PART #den lunch time');
    await bob.expect('OK PART #den');
    await systemLine(alice, 'bob left #den (lunch time).').waitFor();
    await gone(member(alice, '#den', 'bob'));
    await member(alice, '#den', 'alice').waitFor();
    // Not a departure from the chat: still online.
    await online(alice, 'bob').waitFor();
    noScriptRan(alice);
  });

  test('a topic: the header shows it whole on hover, and shows its clearing', async (t) => {
    t.after(cleanup);
    const srv = await server();
    // Only IRC can clear a topic (a native TOPIC without text asks for it).
    const carol = await h.irc(srv, 'carol');
    carol.send('JOIN #den');
    await carol.expect(/ 366 carol #den /);
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    await topicLine(alice).getByText('No topic').waitFor();

    carol.send('TOPIC #den :Friday: release day');
    await carol.expect(/ TOPIC #den :Friday/);
    await topicLine(alice).getByText('Friday: release day', { exact: true }).waitFor();
    assert.equal(await topicLine(alice).getAttribute('title'), 'Friday: release day (set by carol)');
    await systemLine(alice, 'carol set the topic: Friday: release day').waitFor();
    // Seen from elsewhere, the room's topic is current when it is opened again.
    await convButton(alice, 'Everyone').click();
    carol.send('TOPIC #den :');
    await carol.expect(/ TOPIC #den :?$/);
    await convButton(alice, '#den').click();
    await topicLine(alice).getByText('No topic').waitFor();
    await systemLine(alice, 'carol cleared the topic.').waitFor();
    assert.equal(await topicLine(alice).getAttribute('title'), null);
    noScriptRan(alice);
  });

  test('an operator change: the new operator is marked in the member list', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    const bob = await tcp(srv, 'bob');
    bob.send('JOIN #den');
    await bob.expect(/^OK JOIN #den/);
    await member(alice, '#den', 'bob').waitFor();
    await member(alice, '#den', 'carol').getByText('op').waitFor();

    // The last operator leaves: the longest-standing member, alice, becomes one.
    carol.send('PART #den');
    await carol.expect('OK PART #den');
    await systemLine(alice, 'You are now an operator of #den.').waitFor();
    await member(alice, '#den', 'alice').getByText('op').waitFor();
    await gone(member(alice, '#den', 'carol'));
    assert.equal(await member(alice, '#den', 'bob').getByText('op').count(), 0);
    // And the operator's first: the list puts operators on top.
    const names = await alice.getByRole('list', { name: 'Members of #den' }).locator('li').evaluateAll((lis) => lis.map((li) => li.dataset.name));
    assert.deepEqual(names, ['alice', 'bob']);
    // Operator powers work from the page.
    await say(alice, '/topic set by the new operator');
    await bob.expect('TOPIC #den alice set by the new operator');
    noScriptRan(alice);
  });
});
